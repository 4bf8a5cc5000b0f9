// The gateway client of the notifyflow browser app: the REST API and the live connection
// (plain ES module, no build step).
//
// The live connection, its reconnects and the events it emits are LiveConnection's (connection.js),
// which NotifyClient extends.

import { LiveConnection } from './connection.js';

export class ApiError extends Error {
  /** `message` is the gateway's own `error` text, so the UI can show it as it is. */
  constructor(status, message, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }
}

export class NotifyClient extends LiveConnection {
  // ---- REST API -------------------------------------------------------------------------------

  async api(path, { method = 'GET', query, body, keepalive = false } = {}) {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, value);
    }
    const headers = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(url, {
      method, headers, keepalive, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    if (!response.ok) {
      const message = (data && typeof data === 'object' && data.error) || `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message, data);
    }
    return data;
  }

  /** One page of the center: {items, next_cursor}. state: inbox | unread | read | archived | all. */
  list({ limit = 20, cursor, category, state = 'inbox' } = {}) {
    return this.api('/api/notifications', { query: { limit, cursor, category, state } });
  }

  unreadCount() {
    return this.api('/api/notifications/unread-count');
  }

  // Center changes name this device (?device=): the engagement the gateway publishes carries it.
  markRead(id) {
    return this.api(`/api/notifications/${encodeURIComponent(id)}/read`, { method: 'POST', query: { device: this.deviceId } });
  }

  markUnread(id) {
    return this.api(`/api/notifications/${encodeURIComponent(id)}/unread`, { method: 'POST', query: { device: this.deviceId } });
  }

  archive(id) {
    return this.api(`/api/notifications/${encodeURIComponent(id)}/archive`, { method: 'POST', query: { device: this.deviceId } });
  }

  readAll(category) {
    return this.api('/api/notifications/read-all', { method: 'POST', query: { category, device: this.deviceId } });
  }

  remove(id) {
    return this.api(`/api/notifications/${encodeURIComponent(id)}`, { method: 'DELETE', query: { device: this.deviceId } });
  }

  getPreferences() {
    return this.api('/api/preferences');
  }

  putPreferences(preferences) {
    return this.api('/api/preferences', { method: 'PUT', body: preferences });
  }

  registerDevice(device) {
    return this.api('/api/devices', { method: 'POST', body: device });
  }

  /**
   * Reports what only the client sees: 'seen', 'opened', 'clicked' (with the action id), 'dismissed'.
   * It feeds analytics and stops escalations, but must never break the UI: failures are swallowed
   * (and returned).
   */
  async engagement(notificationId, action, actionId = null) {
    try {
      await this.api('/api/engagement', {
        method: 'POST',
        keepalive: true, // survives the page navigating to the deep link right after
        body: { notification_id: notificationId, action, action_id: actionId, device_id: this.deviceId, channel: 'in_app' },
      });
      return true;
    } catch (error) {
      console.warn('engagement not recorded', error.message);
      return false;
    }
  }

  /** Marks notifications read over the open WebSocket (cheaper than one POST each); falls back to the API. */
  async markReadMany(ids) {
    if (this._socket && this._socket.readyState === WebSocket.OPEN) {
      this._socket.send(JSON.stringify({ type: 'read', ids }));
      return;
    }
    await Promise.all(ids.map((id) => this.markRead(id)));
  }
}

export default NotifyClient;
