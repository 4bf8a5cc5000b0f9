// The live connection of the notifyflow browser client, and the event emitter it is built on
// (plain ES module, no build step). NotifyClient (client.js) adds the REST API to it.
//
// Live connection: WebSocket `/ws`, falling back to Server-Sent Events `/events` when WebSocket
// cannot be established at all (proxies that strip Upgrade, old middleboxes). Whichever is used,
// the client remembers the highest `event_seq` it has seen and sends it as `last_event_id` when it
// reconnects, so the gateway replays exactly what changed meanwhile ("notification.sync" events)
// and nothing is missed between two connections.
//
// Reconnects back off exponentially (with jitter, so a gateway restart is not hit by every tab
// at the same instant) and reset after a connection has stayed up for a while.
//
// A "resync" event (or close code 4409) means the gateway dropped events this connection had not
// read yet (it was too slow), or that more changed while it was away than is worth replaying (the
// event then carries the newest event_seq to go on from). The client reconnects at once and emits
// `resync`, so the UI reloads what it shows from the API instead of trusting its local state.
//
// Events emitted (on(type, fn)):
//   'event'                      every live event ({event, event_seq, notification|preferences})
//   '<event name>'               the same, by name: 'notification.created', 'notification.read', ...
//   'resync'                     the UI should reload its state from the API
//   'status'                     {state: 'connecting'|'open'|'reconnecting'|'closed', transport, attempt, delay}

export const DEFAULT_BACKOFF = Object.freeze({ initial: 500, factor: 2, max: 30_000, jitter: 0.2, stableAfter: 10_000 });
const RESYNC_CLOSE = 4409; // gateway: "you fell behind, reconnect and replay"
const AUTH_CLOSE = 4401; // gateway: bad or expired token - retrying the same token is pointless

/** A tiny event emitter: on() returns the unsubscribe function; a failing listener never breaks the others. */
export class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  emit(type, detail) {
    for (const fn of [...(this._listeners.get(type) || [])]) {
      try {
        fn(detail);
      } catch (error) {
        console.error(`listener of ${type} failed`, error);
      }
    }
  }
}

/** Delay before reconnect attempt `attempt` (0-based): initial * factor^attempt, capped, +-jitter. */
export function backoffDelay(attempt, options = DEFAULT_BACKOFF, random = Math.random) {
  const o = { ...DEFAULT_BACKOFF, ...options };
  const base = Math.min(o.max, o.initial * o.factor ** attempt);
  return Math.round(base * (1 - o.jitter + 2 * o.jitter * random()));
}

export class LiveConnection extends Emitter {
  /**
   * @param {object} options
   * @param {string} options.token           the user's JWT (Bearer for the API, ?token= for /ws and /events)
   * @param {string} [options.baseUrl]       the gateway's origin (default: this page's)
   * @param {string} [options.deviceId]      sent as ?device= so the gateway's presence names this tab
   * @param {'auto'|'websocket'|'sse'} [options.transport]
   * @param {object} [options.backoff]       overrides of DEFAULT_BACKOFF
   * @param {number} [options.lastEventId]   resume after this event_seq (e.g. from the first page loaded)
   */
  constructor(options = {}) {
    super();
    if (!options.token) throw new TypeError('NotifyClient: token is required');
    this.token = options.token;
    this.baseUrl = (options.baseUrl || globalThis.location.origin).replace(/\/$/, '');
    this.deviceId = options.deviceId || null;
    this.transport = options.transport || 'auto';
    this.backoff = { ...DEFAULT_BACKOFF, ...(options.backoff || {}) };
    this.lastEventSeq = Number.isInteger(options.lastEventId) ? options.lastEventId : null;
    this.state = 'closed';
    this.activeTransport = null;
    this._attempt = 0;
    this._socket = null;
    this._source = null;
    this._timer = null;
    this._stableTimer = null;
    this._wanted = false;
    // After WebSocket never opened even once, SSE is used from then on (WebSocket is not coming back).
    this._wsWorked = false;
    this._wsFailures = 0;
  }

  // ---- live connection ------------------------------------------------------------------------

  /** Opens the live connection (and keeps it open until close()). */
  connect() {
    this._wanted = true;
    if (!this._onOnline && globalThis.addEventListener) {
      // Back online: no point waiting out the backoff, the network is the thing that just came back.
      this._onOnline = () => {
        if (this._wanted && this._timer) {
          clearTimeout(this._timer);
          this._open();
        }
      };
      globalThis.addEventListener('online', this._onOnline);
    }
    if (!this._socket && !this._source && !this._timer) this._open();
    return this;
  }

  close() {
    this._wanted = false;
    clearTimeout(this._timer);
    clearTimeout(this._stableTimer);
    this._timer = null;
    if (this._onOnline) globalThis.removeEventListener('online', this._onOnline);
    this._onOnline = null;
    this._teardown();
    this._setState('closed');
  }

  _useSse() {
    if (this.transport === 'sse') return true;
    if (this.transport === 'websocket') return false;
    return typeof WebSocket === 'undefined' || (!this._wsWorked && this._wsFailures >= 2);
  }

  _liveUrl(path) {
    const url = new URL(this.baseUrl + path);
    url.searchParams.set('token', this.token);
    if (this.lastEventSeq !== null) url.searchParams.set('last_event_id', String(this.lastEventSeq));
    if (this.deviceId) url.searchParams.set('device', this.deviceId);
    return url;
  }

  _open() {
    this._timer = null;
    if (!this._wanted) return;
    this._setState(this._attempt ? 'reconnecting' : 'connecting');
    if (this._useSse()) this._openSse();
    else this._openWebSocket();
  }

  _openWebSocket() {
    const url = this._liveUrl('/ws');
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(url);
    this._socket = socket;
    this.activeTransport = 'websocket';
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this._wsWorked = true;
      this._onOpen();
    };
    socket.onmessage = (message) => {
      this.lastFrameAt = performance.now(); // when the frame arrived, for the page's render timings
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      this._dispatch(event);
    };
    socket.onclose = (close) => {
      if (this._socket !== socket) return;
      this._socket = null;
      if (!opened) this._wsFailures += 1;
      if (close.code === AUTH_CLOSE) {
        // The token is no good; reconnecting with it would loop forever.
        this._wanted = false;
        this._setState('closed', { reason: close.reason || 'unauthorized' });
        this.emit('unauthorized', { reason: close.reason });
        return;
      }
      if (close.code === RESYNC_CLOSE) {
        this._resync();
        return;
      }
      this._scheduleReconnect();
    };
  }

  _openSse() {
    // EventSource sends Last-Event-ID itself on its own reconnects; we still pass last_event_id so a
    // fresh EventSource (after a fallback or a resync) resumes where the WebSocket left off.
    const source = new EventSource(this._liveUrl('/events'));
    this._source = source;
    this.activeTransport = 'sse';
    source.onopen = () => this._onOpen();
    const onEvent = (message) => {
      try {
        this._dispatch(JSON.parse(message.data));
      } catch {
        /* not JSON: ignore */
      }
    };
    for (const name of ['notification.created', 'notification.updated', 'notification.read', 'notification.unread',
      'notification.archived', 'notification.deleted', 'notification.sync', 'preferences.updated', 'resync']) {
      source.addEventListener(name, onEvent);
    }
    source.onmessage = onEvent;
    source.onerror = () => {
      if (this._source !== source) return;
      // Our own backoff (not EventSource's fixed retry), and a fresh URL carrying the latest event id.
      source.close();
      this._source = null;
      this._scheduleReconnect();
    };
  }

  _onOpen() {
    this._setState('open');
    // Only a connection that stays up for a while resets the backoff; one that drops at once
    // (gateway overloaded, auth proxy flapping) keeps backing off.
    clearTimeout(this._stableTimer);
    this._stableTimer = setTimeout(() => {
      this._attempt = 0;
    }, this.backoff.stableAfter);
  }

  _dispatch(event) {
    if (!event || typeof event !== 'object' || typeof event.event !== 'string') return;
    if (event.event === 'heartbeat') return;
    if (event.event === 'resync') {
      // Over WebSocket the close (4409) follows; over SSE the stream just ends. Either way: resync.
      // With an event_seq, the reload covers everything up to it: go on from there, not replay.
      if (Number.isInteger(event.event_seq)) this.lastEventSeq = event.event_seq;
      this._resync();
      return;
    }
    if (Number.isInteger(event.event_seq)) {
      this.lastEventSeq = Math.max(this.lastEventSeq ?? 0, event.event_seq);
    }
    this.emit('event', event);
    this.emit(event.event, event);
  }

  _resync() {
    if (this._resyncing) return;
    this._resyncing = true;
    this._teardown();
    this.emit('resync', { lastEventSeq: this.lastEventSeq });
    this._resyncing = false;
    // At once: the gateway asked for it; replay from lastEventSeq fills the gap.
    if (this._wanted && !this._timer) this._timer = setTimeout(() => this._open(), 0);
  }

  _scheduleReconnect() {
    clearTimeout(this._stableTimer);
    if (!this._wanted || this._timer) return;
    const delay = backoffDelay(this._attempt, this.backoff);
    this._attempt += 1;
    this._setState('reconnecting', { delay });
    this._timer = setTimeout(() => this._open(), delay);
  }

  _teardown() {
    const socket = this._socket;
    const source = this._source;
    this._socket = null;
    this._source = null;
    if (socket) {
      socket.onclose = socket.onmessage = socket.onopen = null;
      try {
        socket.close(1000);
      } catch {
        /* already closing */
      }
    }
    if (source) source.close();
  }

  _setState(state, extra = {}) {
    this.state = state;
    this.emit('status', { state, transport: this.activeTransport, attempt: this._attempt, ...extra });
  }
}
