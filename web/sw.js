// Web Push service worker of the notifyflow browser client (a classic worker script: module
// service workers are not everywhere yet, and this needs no imports).
//
// push              -> showNotification() from the JSON our Web Push sink sends (sinks/webpush.py):
//                      {title, body, icon, image, badge, tag, data: {notification_id, url, category},
//                       actions: [{action, title}], renotify, requireInteraction}
// notificationclick -> opens (or focuses) data.url and reports `clicked` (with the action id) to
//                      POST /api/engagement
// notificationclose -> reports `dismissed`
//
// The worker has no page to ask for the user's token when a push arrives hours later, so the page
// hands it over with postMessage({type: 'session', token, apiBase, deviceId}) and the worker keeps
// it in IndexedDB. URLs from the payload are used only when https: or same-origin, like the page.
//
// `self.notifyflowSW` exposes the handlers so tests can drive them without a real push service.

'use strict';

const DB_NAME = 'notifyflow';
const STORE = 'kv';
const SESSION_KEY = 'session';
let session = null; // in-memory copy of what the page last sent

// ---- IndexedDB key-value (the page uses the same database, see push.js) ------------------------

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function kv(mode, fn) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

async function saveSession(value) {
  session = value;
  await kv('readwrite', (store) => (value ? store.put(value, SESSION_KEY) : store.delete(SESSION_KEY)));
}

async function getSession() {
  if (session) return session;
  try {
    session = (await kv('readonly', (store) => store.get(SESSION_KEY))) || null;
  } catch {
    session = null;
  }
  return session;
}

// ---- payload -> notification --------------------------------------------------------------------

function safeUrl(value) {
  if (typeof value !== 'string' || value.trim() === '') return null;
  let url;
  try {
    url = new URL(value, self.location.origin);
  } catch {
    return null;
  }
  if (url.protocol === 'https:') return url.href;
  if (url.protocol === 'http:' && url.origin === self.location.origin) return url.href;
  return null;
}

/** [title, options] for showNotification; anything unusable is dropped rather than shown raw. */
function toNotification(payload) {
  const p = payload && typeof payload === 'object' ? payload : {};
  const data = p.data && typeof p.data === 'object' ? p.data : {};
  const options = {
    body: typeof p.body === 'string' ? p.body : '',
    tag: typeof p.tag === 'string' ? p.tag : undefined,
    // A tag replaces the earlier notification silently unless renotify is set (merge updates set it).
    renotify: !!(p.renotify && p.tag),
    requireInteraction: !!p.requireInteraction,
    data: {
      notification_id: typeof data.notification_id === 'string' ? data.notification_id : null,
      url: safeUrl(data.url),
      category: typeof data.category === 'string' ? data.category : null,
    },
    actions: (Array.isArray(p.actions) ? p.actions : [])
      .filter((a) => a && typeof a.action === 'string' && typeof a.title === 'string')
      .slice(0, (self.Notification && Notification.maxActions) || 2)
      .map((a) => ({ action: a.action, title: a.title })),
  };
  for (const [field, value] of [['icon', p.icon], ['image', p.image], ['badge', p.badge]]) {
    const url = safeUrl(value);
    if (url) options[field] = url;
  }
  // The user's sound and vibration: silent mutes both, and showNotification refuses a vibration
  // pattern beside it, so a pattern is passed only when the push is not silent.
  if (p.silent === true) options.silent = true;
  else if (Array.isArray(p.vibrate) && p.vibrate.every((ms) => Number.isInteger(ms) && ms >= 0)) {
    options.vibrate = p.vibrate;
  }
  if (options.tag === undefined) delete options.tag;
  const title = typeof p.title === 'string' && p.title ? p.title : 'New notification';
  return [title, options];
}

function showPush(payload) {
  const [title, options] = toNotification(payload);
  return self.registration.showNotification(title, options);
}

function readPayload(data) {
  if (!data) return {};
  try {
    return data.json();
  } catch {
    return { body: data.text() }; // not JSON: show the text rather than nothing
  }
}

// ---- engagement ---------------------------------------------------------------------------------

/** POST /api/engagement with the stored token; resolves to whether it was accepted. */
async function report(notificationId, action, actionId = null) {
  const s = await getSession();
  if (!s || !s.token || !notificationId) return false;
  try {
    const response = await fetch(`${s.apiBase || self.location.origin}/api/engagement`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ notification_id: notificationId, action, action_id: actionId || null,
                             device_id: s.deviceId || null, channel: 'push' }),
    });
    return response.ok;
  } catch {
    return false; // offline: analytics must not keep the click from opening the page
  }
}

/** Focuses a window already showing `url`, else opens it; resolves to whether a window is shown. */
async function openUrl(url) {
  try {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const client of windows) {
      if (client.url === url && 'focus' in client) {
        await client.focus();
        return true;
      }
    }
    return !!(self.clients.openWindow && (await self.clients.openWindow(url)));
  } catch {
    return false; // only allowed while handling a click; a failed open must not lose the report
  }
}

async function handleClick(notification, action) {
  const data = notification.data || {};
  const url = safeUrl(data.url) || new URL('./demo.html', self.registration.scope).href;
  const [reported, opened] = await Promise.all([report(data.notification_id, 'clicked', action || null), openUrl(url)]);
  return { url, action: action || null, reported, opened };
}

// ---- events ---------------------------------------------------------------------------------------

self.addEventListener('install', () => self.skipWaiting()); // a fixed worker takes over at once
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('message', (event) => {
  const message = event.data || {};
  if (message.type === 'session') {
    event.waitUntil(saveSession({ token: message.token, apiBase: message.apiBase, deviceId: message.deviceId,
                                  vapidPublicKey: message.vapidPublicKey || null }));
  } else if (message.type === 'logout') {
    event.waitUntil(saveSession(null));
  }
});

self.addEventListener('push', (event) => {
  event.waitUntil(showPush(readPayload(event.data)));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  event.waitUntil(handleClick(event.notification, event.action));
});

self.addEventListener('notificationclose', (event) => {
  event.waitUntil(report((event.notification.data || {}).notification_id, 'dismissed'));
});

// The push service rotated the subscription: subscribe again and tell the gateway, or pushes stop.
self.addEventListener('pushsubscriptionchange', (event) => {
  event.waitUntil((async () => {
    const s = await getSession();
    if (!s || !s.token || !s.vapidPublicKey) return;
    const key = Uint8Array.from(atob(s.vapidPublicKey.replace(/-/g, '+').replace(/_/g, '/')
      .padEnd(Math.ceil(s.vapidPublicKey.length / 4) * 4, '=')), (c) => c.charCodeAt(0));
    const subscription = await self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    const json = subscription.toJSON();
    await fetch(`${s.apiBase || self.location.origin}/api/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ device_id: s.deviceId, platform: 'web',
                             web_push: { endpoint: json.endpoint, p256dh: json.keys.p256dh, auth: json.keys.auth } }),
    });
  })());
});

self.notifyflowSW = { toNotification, showPush, handleClick, report, getSession, saveSession, safeUrl };
