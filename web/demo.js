// The demo page: one demo user's live notifications as toasts, in the bell's center, with the
// preferences panel and Web Push - everything wired the way a product page would wire it.
//
// Start-up order matters for "no gaps": the center's first page is loaded BEFORE the live
// connection opens, and the connection resumes after the highest event_seq that page showed,
// so whatever changed in between is replayed (notification.sync) instead of lost.

import { NotifyClient } from './client.js';
import { NotificationCenter } from './center.js';
import { PreferencesPanel } from './preferences.js';
import { deviceId, pushSupported, registerServiceWorker, shareSession, subscribePush } from './push.js';
import { whenIdle } from './idle.js';
import { DEFAULT_DURATIONS, EVENTS, ToastManager } from './toasts.js';

const params = new URLSearchParams(location.search);
const user = params.get('user') || 'alice';
const tenant = params.get('tenant'); // a user is (tenant, user id); none: the default tenant
const SYNC_TOAST_MAX_AGE_MS = 10 * 60 * 1000; // replayed after a reconnect: toast only what is still news

const $ = (id) => document.getElementById(id);
const log = []; // every live event and toast event, for people (console) and tests
window.notifyflowLog = log;

async function demoToken(name) {
  const query = new URLSearchParams({ user: name, ...(tenant ? { tenant } : {}) });
  const response = await fetch(`/demo/token?${query}`);
  if (!response.ok) throw new Error(`no demo token (${response.status}): is the gateway in demo mode?`);
  return (await response.json()).token;
}

function durationsFromQuery() {
  const durations = {};
  for (const priority of Object.keys(DEFAULT_DURATIONS)) {
    if (params.has(priority)) durations[priority] = Number(params.get(priority));
  }
  return durations;
}

/** Which live events become a toast; `known` holds the revision this tab has already seen per id. */
function shouldToast(event, known) {
  const n = event.notification;
  if (event.event === 'notification.created' || event.event === 'notification.updated') return true;
  if (event.event !== 'notification.sync') return false;
  // A replay after a reconnect: new or merged while we were away, still unread, and recent.
  const seen = known.get(n.id);
  const newer = seen === undefined || (Number.isInteger(n.revision) && n.revision > seen);
  const age = Date.now() - Date.parse(n.created_at);
  return newer && !n.read && !n.archived && !(age > SYNC_TOAST_MAX_AGE_MS);
}

async function main() {
  $('user-name').textContent = user;
  $('user-code').textContent = user;
  $('user-input').value = user;
  $('user-switch').addEventListener('submit', (event) => {
    event.preventDefault();
    const next = $('user-input').value.trim();
    if (next) location.search = `?user=${encodeURIComponent(next)}`;
  });

  const token = await demoToken(user);
  const device = deviceId();
  // Each tab is its own live connection: presence must not go "offline" when one of two tabs closes.
  const client = new NotifyClient({ token, deviceId: `${device}:${crypto.randomUUID().slice(0, 8)}`,
                                    transport: params.get('transport') || 'auto' });
  const toasts = new ToastManager({ durations: durationsFromQuery() });
  const center = new NotificationCenter({ client, mount: $('bell-mount') });
  const prefs = new PreferencesPanel({ client, mount: document.body, categories: () => [...center.knownCategories] });
  $('prefs-button').addEventListener('click', () => prefs.open());
  window.notifyflow = { user, client, toasts, center, prefs };

  // Toasts: what the user does with one is engagement, and acting on it reads it. Seen (on screen
  // in a visible tab) tells the flows not to escalate it to push or email.
  for (const type of Object.values(EVENTS)) {
    toasts.addEventListener(type, ({ detail }) => {
      log.push({ type, id: detail.id, reason: detail.reason ?? null, action: detail.action ?? null });
      if (type === EVENTS.SEEN) {
        // Reported once the toast is on screen: a request started now would delay its frame.
        whenIdle(() => client.engagement(detail.id, 'seen'));
      } else if (type === EVENTS.ACTION) {
        client.engagement(detail.id, 'clicked', detail.action);
        client.markRead(detail.id).catch((error) => console.warn('not marked read', error.message));
      } else if (type === EVENTS.DISMISSED && detail.reason === 'closed') {
        client.engagement(detail.id, 'dismissed');
      }
    });
  }

  const connection = $('connection');
  client.on('status', ({ state, transport, delay }) => {
    connection.dataset.state = state;
    connection.dataset.transport = transport || '';
    connection.textContent = state === 'open' ? `Live (${transport === 'sse' ? 'SSE' : 'WebSocket'})`
      : state === 'reconnecting' ? `Reconnecting${delay ? ` in ${Math.ceil(delay / 1000)} s` : '…'}`
        : state === 'closed' ? 'Offline' : 'Connecting…';
    document.documentElement.dataset.connection = state;
  });

  const timings = params.has('measure') ? new Map() : null;
  window.notifyflow.toastTimings = timings;
  if (timings) {
    toasts.addEventListener(EVENTS.SHOWN, ({ detail }) => {
      const timing = timings.get(detail.id);
      if (!timing) return;
      timing.shown = performance.now();
      requestAnimationFrame(() => { timing.painted = performance.now(); });
    });
  }

  const known = new Map(); // id -> revision this tab has shown or loaded
  client.on('event', (event) => {
    log.push({ type: event.event, id: event.notification?.id ?? null, event_seq: event.event_seq ?? null });
    const n = event.notification;
    if (!n || n.id === undefined) return;
    const id = String(n.id);
    if (shouldToast(event, known)) {
      // ?measure=1 (bench.e2e --browser): from the frame's arrival, or for a toast that waited for a
      // free slot from the moment it got one, to the next animation frame after it was shown.
      const timing = timings && { frame: client.lastFrameAt };
      if (timing) timings.set(id, timing);
      const state = toasts.show(n);
      if (timing) timing.queued = state === 'queued';
    }
    // Read, archived or deleted on another device (live, or replayed after a reconnect): its
    // toast here is no longer news.
    if (n.read === true || n.archived === true || event.event === 'notification.deleted') {
      toasts.dismiss(id, 'synced');
    }
    if (Number.isInteger(n.revision)) known.set(id, Math.max(n.revision, known.get(id) ?? -1));
  });

  await center.reload();
  for (const n of center.items.values()) known.set(n.id, n.revision);
  client.lastEventSeq = center.maxEventSeq;
  client.connect();

  setupPush(client, token, device);
}

async function setupPush(client, token, device) {
  const status = $('push-status');
  const vapidPublicKey = params.get('vapid') || document.documentElement.dataset.vapidPublicKey
    || (await client.api('/api/push/config').catch(() => ({}))).vapid_public_key || null;
  let registration = null;
  try {
    registration = await registerServiceWorker();
    if (registration) await shareSession(registration, { token, deviceId: device, vapidPublicKey });
    document.documentElement.dataset.serviceWorker = registration ? 'ready' : 'unsupported';
  } catch (error) {
    document.documentElement.dataset.serviceWorker = 'failed';
    status.textContent = `Service worker not installed: ${error.message}`;
    return;
  }
  window.notifyflow.registration = registration;
  if (!registration || !pushSupported() || !vapidPublicKey) return;
  const button = $('push-button');
  button.hidden = false;
  button.addEventListener('click', async () => {
    // Permission prompts need a user gesture, hence a button rather than asking on load.
    const result = await subscribePush({ client, registration, vapidPublicKey, deviceId: device });
    status.textContent = {
      subscribed: 'Push notifications are on for this browser.',
      denied: 'Push notifications are blocked for this site.',
      unsupported: 'This browser cannot receive push notifications.',
    }[result.status] || `Push subscription failed: ${result.error || result.status}`;
    status.dataset.status = result.status;
    if (result.status === 'subscribed') button.hidden = true;
  });
}

main().catch((error) => {
  document.documentElement.dataset.connection = 'failed';
  $('connection').dataset.state = 'closed';
  $('connection').textContent = `Not connected: ${error.message}`;
  console.warn('demo failed to start', error);
});
