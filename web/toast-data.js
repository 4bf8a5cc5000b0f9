// What a toast is made of (plain ES module, no build step): the notification it shows, normalized
// from the shapes the client and the seed use, its priority and how long it stays.
//
// How long a toast stays: the page's duration for its priority, unless the notification carries the
// user's presentation settings ({auto_dismiss, duration_seconds}): auto_dismiss false keeps it until
// closed, duration_seconds sets how long. Critical toasts keep their own duration whatever the setting.

export const DEFAULT_DURATIONS = Object.freeze({ critical: 8000, high: 6000, normal: 5000, low: 3000 });
export const PRIORITIES = Object.freeze(['critical', 'high', 'normal', 'low']);
export const RANK = { critical: 3, high: 2, normal: 1, low: 0 };

function normalizePriority(value) {
  return Object.prototype.hasOwnProperty.call(RANK, value) ? value : 'normal';
}

function asText(value) {
  return value === undefined || value === null ? '' : String(value);
}

/** Accepts the flat client shape and the nested Notification shape of the seed (content / metadata). */
export function normalize(notification) {
  if (!notification || notification.id === undefined || notification.id === null || notification.id === '') {
    throw new TypeError('ToastManager.show: notification.id is required');
  }
  const n = notification;
  const content = n.content || {};
  const metadata = n.metadata || {};
  const actions = Array.isArray(n.actions) ? n.actions : Array.isArray(content.actions) ? content.actions : [];
  const mergeCount = Number(n.merge_count);
  const revision = Number(n.revision);
  return {
    id: String(n.id),
    title: asText(n.title ?? content.title),
    body: asText(n.body ?? content.body),
    priority: normalizePriority(n.priority),
    category: asText(n.category),
    image_url: n.image_url ?? content.image_url ?? null,
    deep_link: n.deep_link ?? metadata.deep_link ?? null,
    actions: actions
      .filter((a) => a && a.id !== undefined && a.id !== null)
      .map((a) => ({ id: String(a.id), title: asText(a.title ?? a.id) })),
    merge_count: Number.isFinite(mergeCount) && mergeCount >= 1 ? Math.floor(mergeCount) : null,
    revision: Number.isFinite(revision) ? revision : null,
    presentation: n.presentation && typeof n.presentation === 'object' ? n.presentation : null,
    raw: notification,
  };
}

/** ms a toast of `data` stays, with the page's `durations`; null when it stays until closed. */
export function toastDuration(data, durations) {
  const presentation = data.presentation;
  if (presentation && data.priority !== 'critical') {
    if (presentation.auto_dismiss === false) return null;
    const seconds = Number(presentation.duration_seconds);
    if (Number.isFinite(seconds) && seconds > 0) return seconds * 1000;
  }
  const ms = Number(durations[data.priority]);
  return Number.isFinite(ms) && ms >= 0 ? ms : DEFAULT_DURATIONS[data.priority];
}
