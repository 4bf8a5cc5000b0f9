// Service worker registration and Web Push subscription (plain ES module, no build step).
//
// registerServiceWorker()   installs sw.js (scope: the folder it is served from, /static/)
// shareSession()            gives the worker the token it needs to report clicks later (push.js and
//                           sw.js share one IndexedDB store; postMessage also updates the running worker)
// subscribePush()           asks permission, subscribes with the VAPID public key the page was given,
//                           and registers the subscription with POST /api/devices
//
// The VAPID public key is configuration (the b64url uncompressed P-256 point of the delivery
// service's key, WebPushProvider.application_server_key); the demo page reads it from
// <html data-vapid-public-key>, ?vapid=, or the gateway's GET /api/push/config.

const DB_NAME = 'notifyflow';
const STORE = 'kv';
const DEVICE_KEY = 'notifyflow.device';

export function pushSupported() {
  return 'serviceWorker' in navigator && 'PushManager' in globalThis && 'Notification' in globalThis;
}

/** A stable id for this browser profile (the push subscription belongs to it, not to a tab). */
export function deviceId(storage = globalThis.localStorage) {
  let id = storage?.getItem(DEVICE_KEY);
  if (!id) {
    id = `web-${crypto.randomUUID()}`;
    storage?.setItem(DEVICE_KEY, id);
  }
  return id;
}

/** b64url (padded or not) -> bytes, as pushManager.subscribe wants applicationServerKey. */
export function base64UrlToBytes(value) {
  const b64 = value.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(value.length / 4) * 4, '=');
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function sameBytes(a, b) {
  if (!a || !b) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

export async function registerServiceWorker(url = new URL('./sw.js', import.meta.url)) {
  if (!('serviceWorker' in navigator)) return null;
  await navigator.serviceWorker.register(url, { scope: new URL('./', url).pathname });
  return navigator.serviceWorker.ready; // resolves once a worker is active
}

function writeSession(session) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(DB_NAME, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction(STORE, 'readwrite');
      tx.objectStore(STORE).put(session, 'session');
      tx.oncomplete = () => {
        db.close();
        resolve();
      };
      tx.onerror = () => {
        db.close();
        reject(tx.error);
      };
    };
  });
}

/** Stores {token, apiBase, deviceId, vapidPublicKey} for the worker and tells a running one. */
export async function shareSession(registration, { token, apiBase = location.origin, deviceId: device, vapidPublicKey = null }) {
  const session = { token, apiBase, deviceId: device, vapidPublicKey };
  await writeSession(session);
  registration?.active?.postMessage({ type: 'session', ...session });
  return session;
}

/**
 * Subscribes this browser to Web Push and registers it with the gateway.
 * @returns {Promise<{status: 'subscribed'|'unsupported'|'denied'|'no-key'|'failed', error?: string, subscription?: object}>}
 */
export async function subscribePush({ client, registration, vapidPublicKey, deviceId: device }) {
  if (!pushSupported() || !registration?.pushManager) return { status: 'unsupported' };
  if (!vapidPublicKey) return { status: 'no-key' };
  const permission = Notification.permission === 'granted' ? 'granted' : await Notification.requestPermission();
  if (permission !== 'granted') return { status: 'denied' };
  try {
    const key = base64UrlToBytes(vapidPublicKey);
    let subscription = await registration.pushManager.getSubscription();
    // A subscription made for another server key cannot be used with ours: replace it.
    if (subscription && !sameBytes(subscription.options?.applicationServerKey, key)) {
      await subscription.unsubscribe();
      subscription = null;
    }
    subscription ||= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    const json = subscription.toJSON();
    await client.registerDevice({
      device_id: device,
      platform: 'web',
      web_push: { endpoint: json.endpoint, p256dh: json.keys.p256dh, auth: json.keys.auth },
      app_version: 'web',
    });
    return { status: 'subscribed', subscription: json };
  } catch (error) {
    // Headless browsers and some privacy modes have no push service: a state to show, not a crash.
    return { status: 'failed', error: error.message || String(error) };
  }
}
