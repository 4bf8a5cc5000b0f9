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
// "interrupted" is the one way back: a critical toast arriving while `maxVisible` toasts are
// shown takes the place of the oldest non-critical visible toast, which returns to the FRONT
// of the queue (state queued again, full duration when it is shown again).
//
// Queue order: FIFO, with priority override - a queued toast goes ahead of every queued toast of
// strictly lower priority (critical > high > normal > low), after those of equal or higher priority.
// A critical toast never waits while a non-critical one is visible.
//
// What a toast is made of and how long it stays is toast-data.js's; its element is toast-view.js's.

import { buildRegions, fillToast, renderToast, showState } from './toast-view.js';
import { DEFAULT_DURATIONS, RANK, normalize, toastDuration } from './toast-data.js';

// The names the pages and tests import from the toast manager's module.
export { DEFAULT_DURATIONS } from './toast-data.js';
export { safeUrl } from './safe-url.js';

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
    buildRegions(this);
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
    rec.remaining = toastDuration(rec.data, this.durations);
    renderToast(this, rec);
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
    fillToast(this, rec);
    if (focusInside && this.document.activeElement !== el) el.focus();
    // The timer restarts with the full (possibly new) duration; pause reasons carry over.
    clearTimeout(rec.timer);
    rec.timer = null;
    rec.remaining = toastDuration(rec.data, this.durations);
    this._setState(rec, rec.pauses.size ? 'paused' : 'displaying');
    if (!rec.pauses.size) this._startTimer(rec);
    this._emit(EVENTS.UPDATED, rec);
    return rec.state;
  }

  // ---- timers and pausing -------------------------------------------------------------------

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
    if (rec.el) showState(rec.el, state);
  }

  // ---- the element's region, and its actions (toast-view.js calls _act) ----------------------

  _regionFor(rec) {
    return rec.data.priority === 'critical' ? this.alertRegion : this.politeRegion;
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
