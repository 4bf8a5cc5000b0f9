// Toast manager of the notifyflow browser client (plain ES module, no build step).
//
// State machine per toast (SEED.md, "Toast Management System"):
//
//   queued --> displaying <--> paused          (hover, keyboard focus, tab hidden, pause())
//                  |
//                  +--> dismissed  reason: timeout | action | closed | interrupted
//
// "seen" (once per toast): the toast was on screen while the tab was visible - at once when it is
// shown in a visible tab, else when the tab becomes visible with the toast still there. A toast that
// only ever sat in a hidden tab was not seen.
//
// How long a toast stays: the page's duration for its priority, unless the notification carries the
// user's presentation settings ({auto_dismiss, duration_seconds}): auto_dismiss false keeps it until
// closed, duration_seconds sets how long. Critical toasts keep their own duration whatever the setting.
//
// "interrupted" is the one way back: a critical toast arriving while `maxVisible` toasts are
// shown takes the place of the oldest non-critical visible toast, which returns to the FRONT
// of the queue (state queued again, full duration when it is shown again).
//
// Queue order: FIFO, with priority override - a queued toast goes ahead of every queued toast of
// strictly lower priority (critical > high > normal > low), after those of equal or higher priority.
// A critical toast never waits while a non-critical one is visible.
//
// Security: notification content is only ever written with textContent / setAttribute of
// non-URL attributes; URLs (deep_link, image_url) are used only when https: or same-origin.

export const DEFAULT_DURATIONS = Object.freeze({ critical: 8000, high: 6000, normal: 5000, low: 3000 });
export const PRIORITIES = Object.freeze(['critical', 'high', 'normal', 'low']);
const RANK = { critical: 3, high: 2, normal: 1, low: 0 };
export const EVENTS = Object.freeze({
  QUEUED: 'toast:queued',
  SHOWN: 'toast:shown',
  UPDATED: 'toast:updated',
  PAUSED: 'toast:paused',
  RESUMED: 'toast:resumed',
  ACTION: 'toast:action',
  DISMISSED: 'toast:dismissed',
  SEEN: 'toast:seen',
});

let domIds = 0;

function normalizePriority(value) {
  return Object.prototype.hasOwnProperty.call(RANK, value) ? value : 'normal';
}

function asText(value) {
  return value === undefined || value === null ? '' : String(value);
}

/**
 * The URL to use for `value`, or null when it must be ignored: only https: URLs and same-origin
 * (http/https) URLs - relative ones included - pass; javascript:, data:, blob:, other hosts over
 * plain http, protocol-relative URLs to other hosts, ... are all rejected.
 */
export function safeUrl(value, base = globalThis.location?.href) {
  if (typeof value !== 'string' || value.trim() === '') return null;
  let url;
  try {
    url = new URL(value, base);
  } catch {
    return null;
  }
  if (url.protocol === 'https:') return url.href;
  const origin = base ? new URL(base).origin : null;
  if (url.protocol === 'http:' && origin && origin !== 'null' && url.origin === origin) return url.href;
  return null;
}

/** Accepts the flat client shape and the nested Notification shape of the seed (content / metadata). */
function normalize(notification) {
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

/**
 * A decorative <img> for a notification's image, or null when the URL is not safe to load.
 * No referrer leaks the page to image hosts; a broken image removes itself.
 */
export function imageElement(doc, url, className) {
  const image = safeUrl(url, doc.baseURI);
  if (!image) return null;
  const img = doc.createElement('img');
  img.className = className;
  img.alt = '';
  img.loading = 'lazy';
  img.referrerPolicy = 'no-referrer';
  img.addEventListener('error', () => img.remove(), { once: true });
  img.src = image;
  return img;
}

export class ToastManager extends EventTarget {
  /**
   * @param {object} [options]
   * @param {Element} [options.container]  element to render into; created and appended to <body> when omitted
   * @param {object}  [options.durations]   ms per priority, merged over DEFAULT_DURATIONS
   * @param {number}  [options.maxVisible]  concurrent visible toasts (default 5)
   * @param {function} [options.onEvent]    callback(type, detail) for every event, besides dispatchEvent
   * @param {Document} [options.document]
   */
  constructor(options = {}) {
    super();
    this.document = options.document || globalThis.document;
    this.durations = { ...DEFAULT_DURATIONS, ...(options.durations || {}) };
    this.maxVisible = Math.max(1, Math.floor(options.maxVisible ?? 5));
    this.onEvent = typeof options.onEvent === 'function' ? options.onEvent : null;
    this._records = new Map(); // id -> record, queued or visible
    this._visible = []; // records in display order (oldest first)
    this._queue = []; // records waiting, front first
    this._ownsContainer = !options.container;
    this.container = options.container || this.document.createElement('div');
    this._buildRegions();
    if (this._ownsContainer) this.document.body.appendChild(this.container);
    this._onVisibility = () => this._syncHidden();
    this.document.addEventListener('visibilitychange', this._onVisibility);
  }

  // ---- public API ---------------------------------------------------------------------------

  /**
   * Shows (or queues) a notification; an id already queued or visible is updated in place.
   * @returns {'displaying'|'paused'|'queued'|'stale'} the toast's state after the call
   */
  show(notification) {
    const data = normalize(notification);
    const existing = this._records.get(data.id);
    if (existing) return this._update(existing, data);
    const rec = {
      id: data.id,
      data,
      count: data.merge_count ?? 1,
      state: 'queued',
      pauses: new Set(),
      remaining: 0,
      startedAt: 0,
      timer: null,
      el: null,
      seen: false,
    };
    this._records.set(rec.id, rec);
    this._place(rec);
    return rec.state;
  }

  /** Dismisses a queued or visible toast. @returns {boolean} whether there was one */
  dismiss(id, reason = 'closed') {
    const rec = this._records.get(String(id));
    if (!rec) return false;
    this._remove(rec, reason);
    this._drain();
    return true;
  }

  dismissAll(reason = 'closed') {
    for (const rec of [...this._queue, ...this._visible]) this._remove(rec, reason);
  }

  /** Programmatic pause / resume (independent of hover, focus and tab visibility). */
  pause(id) {
    const rec = this._records.get(String(id));
    if (rec && rec.el) this._addPause(rec, 'api');
  }

  resume(id) {
    const rec = this._records.get(String(id));
    if (rec && rec.el) this._removePause(rec, 'api');
  }

  /** 'queued' | 'displaying' | 'paused', or null when the id is unknown or dismissed. */
  getState(id) {
    return this._records.get(String(id))?.state ?? null;
  }

  get visibleIds() {
    return this._visible.map((r) => r.id);
  }

  get queuedIds() {
    return this._queue.map((r) => r.id);
  }

  destroy() {
    for (const rec of this._records.values()) clearTimeout(rec.timer);
    this._records.clear();
    this._visible = [];
    this._queue = [];
    this.document.removeEventListener('visibilitychange', this._onVisibility);
    if (this._ownsContainer) this.container.remove();
    else this.container.replaceChildren();
  }

  // ---- placement: queue, interrupt, drain ---------------------------------------------------

  _place(rec) {
    if (this._visible.length < this.maxVisible) {
      this._display(rec);
      return;
    }
    if (rec.data.priority === 'critical') {
      const victim = this._visible.find((r) => r.data.priority !== 'critical');
      if (victim) {
        this._interrupt(victim);
        this._display(rec);
        return;
      }
    }
    this._enqueue(rec);
  }

  _enqueue(rec, front = false) {
    rec.state = 'queued';
    if (front) {
      this._queue.unshift(rec);
    } else {
      const rank = RANK[rec.data.priority];
      const at = this._queue.findIndex((r) => RANK[r.data.priority] < rank);
      if (at === -1) this._queue.push(rec);
      else this._queue.splice(at, 0, rec);
    }
    this._emit(EVENTS.QUEUED, rec);
  }

  _interrupt(rec) {
    this._takeDown(rec);
    this._emit(EVENTS.DISMISSED, rec, { reason: 'interrupted' });
    this._enqueue(rec, true);
  }

  _drain() {
    while (this._visible.length < this.maxVisible && this._queue.length) {
      this._display(this._queue.shift());
    }
  }

  _display(rec) {
    rec.state = 'displaying';
    rec.pauses.clear();
    rec.remaining = this._duration(rec);
    this._render(rec);
    this._visible.push(rec);
    this._regionFor(rec).appendChild(rec.el);
    this._setState(rec, 'displaying');
    if (this.document.hidden) rec.pauses.add('hidden');
    this._emit(EVENTS.SHOWN, rec);
    this._markSeen(rec);
    if (rec.pauses.size) this._setState(rec, 'paused');
    else this._startTimer(rec);
  }

  /** Emits SEEN once per toast, when it is on screen in a visible tab. */
  _markSeen(rec) {
    if (rec.seen || !rec.el || this.document.visibilityState !== 'visible') return;
    rec.seen = true;
    this._emit(EVENTS.SEEN, rec);
  }

  /** Removes the element and timer of a visible toast (no event, no drain). */
  _takeDown(rec) {
    clearTimeout(rec.timer);
    rec.timer = null;
    rec.pauses.clear();
    if (rec.el) rec.el.remove();
    rec.el = null;
    this._visible = this._visible.filter((r) => r !== rec);
  }

  _remove(rec, reason) {
    const wasQueued = rec.state === 'queued';
    if (wasQueued) this._queue = this._queue.filter((r) => r !== rec);
    else this._takeDown(rec);
    this._records.delete(rec.id);
    rec.state = 'dismissed';
    this._emit(EVENTS.DISMISSED, rec, { reason, wasQueued });
  }

  _update(rec, data) {
    const old = rec.data;
    if (data.revision !== null && old.revision !== null && data.revision < old.revision) return 'stale';
    const duplicate = data.revision !== null && data.revision === old.revision;
    rec.count = data.merge_count ?? (duplicate ? rec.count : rec.count + 1);
    rec.data = data;
    const becameCritical = data.priority === 'critical' && old.priority !== 'critical';
    if (rec.state === 'queued') {
      if (data.priority !== old.priority) {
        this._queue = this._queue.filter((r) => r !== rec);
        if (becameCritical) this._place(rec);
        else this._enqueue(rec);
      }
      this._emit(EVENTS.UPDATED, rec);
      return rec.state;
    }
    // Visible: refill the same element (hover and focus stay on it), moving it between the polite
    // and the assertive region when the priority crossed "critical".
    const el = rec.el;
    const focusInside = el.contains(this.document.activeElement);
    const region = this._regionFor(rec);
    if (el.parentNode !== region) region.appendChild(el);
    this._fill(rec);
    if (focusInside && this.document.activeElement !== el) el.focus();
    // The timer restarts with the full (possibly new) duration; pause reasons carry over.
    clearTimeout(rec.timer);
    rec.timer = null;
    rec.remaining = this._duration(rec);
    this._setState(rec, rec.pauses.size ? 'paused' : 'displaying');
    if (!rec.pauses.size) this._startTimer(rec);
    this._emit(EVENTS.UPDATED, rec);
    return rec.state;
  }

  // ---- timers and pausing -------------------------------------------------------------------

  /** ms the toast stays; null when it stays until closed. */
  _duration(rec) {
    const presentation = rec.data.presentation;
    if (presentation && rec.data.priority !== 'critical') {
      if (presentation.auto_dismiss === false) return null;
      const seconds = Number(presentation.duration_seconds);
      if (Number.isFinite(seconds) && seconds > 0) return seconds * 1000;
    }
    const ms = Number(this.durations[rec.data.priority]);
    return Number.isFinite(ms) && ms >= 0 ? ms : DEFAULT_DURATIONS[rec.data.priority];
  }

  _startTimer(rec) {
    clearTimeout(rec.timer);
    rec.timer = null;
    if (rec.remaining === null) return; // stays until closed
    rec.startedAt = performance.now();
    rec.timer = setTimeout(() => {
      rec.timer = null;
      if (this._records.get(rec.id) === rec && rec.el) {
        this._remove(rec, 'timeout');
        this._drain();
      }
    }, Math.max(0, rec.remaining));
  }

  _addPause(rec, reason) {
    if (!rec.el || rec.pauses.has(reason)) return;
    rec.pauses.add(reason);
    if (rec.pauses.size !== 1) return;
    if (rec.timer) {
      clearTimeout(rec.timer);
      rec.timer = null;
      rec.remaining = Math.max(0, rec.remaining - (performance.now() - rec.startedAt));
    }
    this._setState(rec, 'paused');
    this._emit(EVENTS.PAUSED, rec, { cause: reason });
  }

  _removePause(rec, reason) {
    if (!rec.el || !rec.pauses.delete(reason) || rec.pauses.size) return;
    this._setState(rec, 'displaying');
    this._emit(EVENTS.RESUMED, rec, { cause: reason });
    this._startTimer(rec);
  }

  _syncHidden() {
    const hidden = !!this.document.hidden;
    for (const rec of [...this._visible]) {
      if (hidden) this._addPause(rec, 'hidden');
      else this._removePause(rec, 'hidden');
      this._markSeen(rec);
    }
  }

  _setState(rec, state) {
    rec.state = state;
    if (rec.el) {
      rec.el.dataset.state = state;
      const progress = rec.el.querySelector('.toast-progress');
      if (progress) progress.style.animationPlayState = state === 'paused' ? 'paused' : 'running';
    }
  }

  // ---- rendering (textContent only) ---------------------------------------------------------

  _buildRegions() {
    const doc = this.document;
    this.container.classList.add('toast-container');
    this.alertRegion = doc.createElement('div');
    this.alertRegion.className = 'toast-region toast-region--assertive';
    this.alertRegion.setAttribute('role', 'alert');
    this.alertRegion.setAttribute('aria-live', 'assertive');
    this.alertRegion.setAttribute('aria-label', 'Critical notifications');
    this.politeRegion = doc.createElement('div');
    this.politeRegion.className = 'toast-region toast-region--polite';
    this.politeRegion.setAttribute('role', 'status');
    this.politeRegion.setAttribute('aria-live', 'polite');
    this.politeRegion.setAttribute('aria-label', 'Notifications');
    this.container.replaceChildren(this.alertRegion, this.politeRegion);
  }

  _regionFor(rec) {
    return rec.data.priority === 'critical' ? this.alertRegion : this.politeRegion;
  }

  /** The toast element: attributes and listeners that live as long as the toast is visible. */
  _render(rec) {
    const el = this.document.createElement('div');
    el.className = 'toast';
    el.tabIndex = 0;
    el.setAttribute('data-toast-id', rec.id);
    el.setAttribute('data-state', rec.state);
    el.addEventListener('mouseenter', () => this._addPause(rec, 'hover'));
    el.addEventListener('mouseleave', () => this._removePause(rec, 'hover'));
    el.addEventListener('focusin', () => this._addPause(rec, 'focus'));
    el.addEventListener('focusout', (event) => {
      if (!el.contains(event.relatedTarget)) this._removePause(rec, 'focus');
    });
    el.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' || event.key === 'Esc') {
        event.preventDefault();
        event.stopPropagation();
        this.dismiss(rec.id, 'closed');
      }
    });
    rec.el = el;
    this._fill(rec);
    return el;
  }

  /** (Re)builds the content of rec.el from rec.data - text via textContent only. */
  _fill(rec) {
    const doc = this.document;
    const el = rec.el;
    const d = rec.data;
    const n = ++domIds;
    el.setAttribute('data-priority', d.priority);
    if (d.category) el.setAttribute('data-category', d.category);
    else el.removeAttribute('data-category');
    el.setAttribute('aria-labelledby', `toast-title-${n}`);
    el.setAttribute('aria-describedby', `toast-body-${n}`);
    const duration = this._duration(rec);
    el.toggleAttribute('data-persistent', duration === null); // no countdown to show
    if (duration !== null) el.style.setProperty('--toast-duration', `${duration}ms`);
    const parts = [];

    const img = imageElement(doc, d.image_url, 'toast-image');
    if (img) parts.push(img);

    const content = doc.createElement('div');
    content.className = 'toast-content';
    const header = doc.createElement('div');
    header.className = 'toast-header';
    const title = doc.createElement('strong');
    title.className = 'toast-title';
    title.id = `toast-title-${n}`;
    title.textContent = d.title;
    header.appendChild(title);
    if (rec.count > 1) {
      const badge = doc.createElement('span');
      badge.className = 'toast-badge';
      badge.title = `${rec.count} notifications`;
      badge.textContent = String(rec.count);
      header.appendChild(badge);
    }
    const body = doc.createElement('p');
    body.className = 'toast-body';
    body.id = `toast-body-${n}`;
    body.textContent = d.body;
    content.append(header, body);

    const link = safeUrl(d.deep_link, doc.baseURI);
    if (d.actions.length || link) {
      const actions = doc.createElement('div');
      actions.className = 'toast-actions';
      for (const action of d.actions) {
        const button = doc.createElement('button');
        button.type = 'button';
        button.className = 'toast-action';
        button.setAttribute('data-action-id', action.id);
        button.textContent = action.title;
        button.addEventListener('click', () => this._act(rec, action.id));
        actions.appendChild(button);
      }
      if (link) {
        const a = doc.createElement('a');
        a.className = 'toast-link';
        a.href = link;
        a.rel = 'noopener noreferrer';
        a.textContent = 'Open';
        a.addEventListener('click', () => this._act(rec, 'open', { deep_link: link }));
        actions.appendChild(a);
      }
      content.appendChild(actions);
    }
    parts.push(content);

    const close = doc.createElement('button');
    close.type = 'button';
    close.className = 'toast-close';
    close.setAttribute('aria-label', 'Dismiss notification');
    close.textContent = '\u00d7';
    close.addEventListener('click', () => this.dismiss(rec.id, 'closed'));
    parts.push(close);

    const progress = doc.createElement('div');
    progress.className = 'toast-progress';
    progress.setAttribute('aria-hidden', 'true');
    parts.push(progress);

    el.replaceChildren(...parts);
  }

  _act(rec, actionId, extra = {}) {
    if (this._records.get(rec.id) !== rec) return;
    this._emit(EVENTS.ACTION, rec, { action: actionId, ...extra });
    this.dismiss(rec.id, 'action');
  }

  // ---- events -------------------------------------------------------------------------------

  _emit(type, rec, extra = {}) {
    const detail = {
      id: rec.id,
      state: rec.state,
      priority: rec.data.priority,
      count: rec.count,
      notification: rec.data.raw,
      ...extra,
    };
    this.dispatchEvent(new CustomEvent(type, { detail }));
    if (this.onEvent) {
      try {
        this.onEvent(type, detail);
      } catch (error) {
        console.error('ToastManager onEvent callback failed', error);
      }
    }
  }
}

export default ToastManager;
