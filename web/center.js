// Bell with unread badge and the dropdown notification center (plain ES module, no build step).
//
// What it shows comes from two places: pages of GET /api/notifications (cursor pagination,
// newest first) and the live events of NotifyClient, which keep every loaded item current
// (new, merged, read/unread on another device, archived, deleted). The unread count always
// comes from the gateway (GET /api/notifications/unread-count, coalesced after changes): it
// counts notifications no page has loaded, so a local tally would drift.
//
// Security: notification data is written with textContent and non-URL attributes only, never
// innerHTML (html_body is deliberately not used here). Links and images are used only when their
// URL is https: or same-origin (safeUrl of safe-url.js).

import { whenIdle } from './idle.js';
import { imageElement, safeUrl } from './safe-url.js';

export const STATES = Object.freeze([
  ['inbox', 'Inbox'], ['unread', 'Unread'], ['read', 'Read'], ['archived', 'Archived'], ['all', 'All'],
]);
const COUNT_DEBOUNCE_MS = 80;
const SVG = 'http://www.w3.org/2000/svg';
// Icons as SVG paths: emoji and symbol glyphs are missing from many system fonts.
const ICONS = Object.freeze({
  bell: 'M12 2a6 6 0 0 0-6 6v4l-2 3v1h16v-1l-2-3V8a6 6 0 0 0-6-6zm-2 16a2 2 0 0 0 4 0z',
  read: 'M12 6a6 6 0 1 0 0 12 6 6 0 0 0 0-12z', // filled dot: unread, click to read
  unread: 'M12 6a6 6 0 1 0 0 12 6 6 0 0 0 0-12zm0 2a4 4 0 1 1 0 8 4 4 0 0 1 0-8z', // ring: read
  archive: 'M3 4h18v4H3zm1 5h16v11H4zm5 3v2h6v-2z',
});
let instances = 0;

function text(value) {
  return value === undefined || value === null ? '' : String(value);
}

/** Newest first, ties by id descending - the gateway's ORDER BY created_at DESC, id DESC. */
function compare(a, b) {
  const ta = Date.parse(a.created_at) || 0;
  const tb = Date.parse(b.created_at) || 0;
  if (ta !== tb) return tb - ta;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** An action's `action` is a link only when it is an absolute URL or a root-relative path; else a verb. */
function actionUrl(action, base) {
  const target = text(action?.action);
  if (!/^([a-z][a-z0-9+.-]*:|\/(?!\/))/i.test(target)) return null;
  return safeUrl(target, base);
}

// One formatter each, made on first use: building an Intl formatter costs more than formatting with it.
// The date format is Date#toLocaleString's (numeric date and time).
let relativeFormat = null;
let dateFormat = null;

function relativeTime(iso, now = Date.now()) {
  const then = Date.parse(iso);
  if (!Number.isFinite(then)) return '';
  const seconds = Math.round((then - now) / 1000);
  relativeFormat ??= new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  for (const [unit, size] of [['day', 86400], ['hour', 3600], ['minute', 60]]) {
    if (Math.abs(seconds) >= size) return relativeFormat.format(Math.round(seconds / size), unit);
  }
  return relativeFormat.format(0, 'second');
}

export class NotificationCenter {
  /**
   * @param {object} options
   * @param {import('./client.js').NotifyClient} options.client
   * @param {Element} options.mount        where the bell (and its dropdown) go
   * @param {number} [options.pageSize]
   * @param {(url: string) => void} [options.navigate]  follows a deep link (default: location.assign)
   */
  constructor({ client, mount, pageSize = 20, navigate } = {}) {
    this.client = client;
    this.pageSize = pageSize;
    this.navigate = navigate || ((url) => globalThis.location.assign(url));
    this.document = mount.ownerDocument;
    this.items = new Map(); // id -> notification, only those matching the filter and loaded
    this.filter = { category: '', state: 'inbox' };
    this.nextCursor = null;
    this.loaded = false;
    this.loading = null;
    this.counts = { total: 0, by_category: {} };
    this.knownCategories = new Set();
    this._pending = []; // live changes that arrived while the first page was loading
    this._generation = 0; // bumps on every reload, so a page from an older filter is dropped
    this._countTimer = null;
    this._dirty = new Set(); // ids whose list element is not up to date with `items` yet
    this._renderRequest = null; // cancels the scheduled _renderList
    this._unsubscribe = [];
    this._build(mount);
    this._listen();
  }

  // ---- public API ---------------------------------------------------------------------------

  get isOpen() {
    return !this.panel.hidden;
  }

  open() {
    if (this.isOpen) return;
    this.panel.hidden = false;
    this.bell.setAttribute('aria-expanded', 'true');
    this.root.classList.add('nf-open');
    this._renderList();
    if (!this.loaded && !this.loading) this.reload();
    else this._maybeLoadMore();
    this._renderTimes();
    this.document.addEventListener('pointerdown', this._onOutside, true);
    this.panel.querySelector('.nf-state-filter [aria-pressed="true"]')?.focus({ preventScroll: true });
  }

  close({ focusBell = false } = {}) {
    if (!this.isOpen) return;
    this.panel.hidden = true;
    this.bell.setAttribute('aria-expanded', 'false');
    this.root.classList.remove('nf-open');
    this.document.removeEventListener('pointerdown', this._onOutside, true);
    if (focusBell) this.bell.focus();
  }

  toggle() {
    if (this.isOpen) this.close();
    else this.open();
  }

  /** Drops what is loaded and loads the first page (and the count) again: filters, resync. */
  async reload() {
    this._generation += 1;
    this.items.clear();
    this._pending = [];
    this.nextCursor = null;
    this.loaded = false;
    this.loading = null;
    this._dirty.clear();
    this.list.replaceChildren();
    this.refreshCount();
    return this.loadMore();
  }

  /** The next page (the first when nothing is loaded). Resolves to the page, or null when none was needed. */
  loadMore() {
    if (this.loading) return this.loading;
    if (this.loaded && !this.nextCursor) return Promise.resolve(null);
    const generation = this._generation;
    const { category, state } = this.filter;
    this._setBusy(true);
    this.loading = this.client.list({ limit: this.pageSize, cursor: this.nextCursor, category, state })
      .then((page) => {
        if (generation !== this._generation) return null;
        for (const n of page.items) this._upsert(n);
        this.nextCursor = page.next_cursor;
        this.loaded = true;
        for (const n of this._pending.splice(0)) this._upsert(n, { live: true });
        this._renderList(); // a page is shown whole, before the sentinel is measured again
        this._setStatus('');
        return page;
      })
      .catch((error) => {
        if (generation === this._generation) this._setStatus(`Could not load notifications: ${error.message}`);
        return null;
      })
      .finally(() => {
        if (generation !== this._generation) return;
        this.loading = null;
        this._setBusy(false);
        this._renderEmpty();
        // A short page may leave the sentinel in view: the observer does not fire again for it.
        this._maybeLoadMore();
      });
    return this.loading;
  }

  /** The highest event_seq among loaded items: a safe `last_event_id` to resume live events from. */
  get maxEventSeq() {
    let max = 0;
    for (const n of this.items.values()) if (Number.isInteger(n.event_seq)) max = Math.max(max, n.event_seq);
    return max;
  }

  /** Fetches the unread count soon; several changes in a burst cost one request. */
  refreshCount() {
    clearTimeout(this._countTimer);
    return new Promise((resolve) => {
      this._countTimer = setTimeout(async () => {
        try {
          this._setCounts(await this.client.unreadCount());
        } catch (error) {
          console.warn('unread count not refreshed', error.message);
        }
        resolve(this.counts);
      }, COUNT_DEBOUNCE_MS);
    });
  }

  /** Applies one live event of NotifyClient. */
  applyEvent(event) {
    const name = event.event;
    const n = event.notification;
    if (!n || n.id === undefined || n.id === null) return;
    if (name === 'notification.deleted') {
      this._removeItem(String(n.id));
    } else if (name.startsWith('notification.')) {
      const previous = this.items.get(String(n.id));
      const row = { ...n, id: String(n.id) };
      if (!Number.isInteger(row.event_seq) && Number.isInteger(event.event_seq)) row.event_seq = event.event_seq;
      // The in-app sink's created/updated events carry content only: a new or merged notification
      // is unread (a merge makes "3 new messages" news again), and archiving is kept as it was.
      if (name === 'notification.created' || name === 'notification.updated') {
        row.read = row.read ?? false;
        row.archived = row.archived ?? previous?.archived ?? false;
      }
      this._upsert(row, { live: true });
    }
    this.refreshCount();
  }

  destroy() {
    for (const off of this._unsubscribe) off();
    this._observer?.disconnect();
    clearTimeout(this._countTimer);
    this._renderRequest?.();
    this.document.removeEventListener('pointerdown', this._onOutside, true);
    this.root.remove();
  }

  // ---- state --------------------------------------------------------------------------------

  _matches(n) {
    if (this.filter.category && n.category !== this.filter.category) return false;
    switch (this.filter.state) {
      case 'unread': return !n.read && !n.archived;
      case 'read': return !!n.read && !n.archived;
      case 'archived': return !!n.archived;
      case 'all': return true;
      default: return !n.archived;
    }
  }

  _upsert(n, { live = false } = {}) {
    const id = String(n.id);
    const previous = this.items.get(id);
    // Out-of-order delivery (a page fetched before a change, answered after it): the newer wins.
    if (previous && Number.isInteger(previous.event_seq) && Number.isInteger(n.event_seq)
        && n.event_seq < previous.event_seq) return;
    const merged = previous ? { ...previous, ...n } : { ...n };
    if (merged.category) this._addCategory(merged.category);
    if (!this._matches(merged)) {
      this._removeItem(id);
      return;
    }
    if (!previous && live && !this.loaded) {
      // The first page is on its way and may have been read before this change: apply it after.
      if (this.loading) this._pending.push(n);
      return;
    }
    if (!previous && live && !this._withinLoaded(merged)) return; // a later page brings it
    this.items.set(id, merged);
    this._changed(id);
  }

  /** True when `n` sorts among what is loaded (or everything is loaded). */
  _withinLoaded(n) {
    if (!this.nextCursor) return true;
    const last = [...this.items.values()].sort(compare).at(-1);
    return !last || compare(n, last) <= 0;
  }

  _removeItem(id) {
    this.items.delete(id);
    this._changed(id);
  }

  /**
   * The list shows `id` as `items` has it by the next frame when the panel is open, else when the page
   * is idle (and at once when it opens): a burst of live events must not hold up their toasts' frame.
   */
  _changed(id) {
    this._dirty.add(id);
    this._renderEmpty();
    if (this._renderRequest) return;
    if (this.isOpen) {
      const frame = requestAnimationFrame(() => this._renderList());
      this._renderRequest = () => cancelAnimationFrame(frame);
    } else {
      this._renderRequest = whenIdle((deadline) => this._renderList(deadline));
    }
  }

  /** Renders, moves or removes the elements of the changed ids; with a deadline, only while it lasts. */
  _renderList(deadline = null) {
    this._renderRequest?.();
    this._renderRequest = null;
    for (const id of this._dirty) {
      if (deadline && !deadline.didTimeout && deadline.timeRemaining() < 1) {
        this._renderRequest = whenIdle((next) => this._renderList(next));
        return;
      }
      this._dirty.delete(id);
      const el = this.list.querySelector(`[data-id="${CSS.escape(id)}"]`);
      const n = this.items.get(id);
      if (n) this._position(this._renderItem(n, el), n);
      else el?.remove();
    }
  }

  _setCounts(counts) {
    this.counts = { total: Number(counts?.total) || 0, by_category: counts?.by_category || {} };
    for (const category of Object.keys(this.counts.by_category)) this._addCategory(category);
    const total = this.counts.total;
    this.badge.textContent = total > 99 ? '99+' : String(total);
    this.badge.hidden = total === 0;
    this.root.dataset.unread = String(total);
    this.bell.setAttribute('aria-label', total ? `Notifications, ${total} unread` : 'Notifications, none unread');
    this.readAllButton.disabled = total === 0;
    for (const option of this.categorySelect.options) {
      if (!option.value) continue;
      const n = this.counts.by_category[option.value] || 0;
      option.textContent = n ? `${option.value} (${n})` : option.value;
    }
  }

  _addCategory(category) {
    if (!category || this.knownCategories.has(category)) return;
    this.knownCategories.add(category);
    const option = this.document.createElement('option');
    option.value = category;
    option.textContent = category;
    const after = [...this.categorySelect.options].find((o) => o.value && o.value > category);
    this.categorySelect.insertBefore(option, after || null);
  }

  // ---- user actions -------------------------------------------------------------------------

  async _toggleRead(id) {
    const n = this.items.get(id);
    if (!n) return;
    const read = !n.read;
    this._upsert({ ...n, read }); // optimistic; the gateway's event confirms it on every device
    try {
      this._upsert(read ? await this.client.markRead(id) : await this.client.markUnread(id));
    } catch (error) {
      this._upsert({ ...n });
      this._setStatus(`Could not update: ${error.message}`);
    }
    this.refreshCount();
  }

  async _archive(id) {
    const n = this.items.get(id);
    if (!n) return;
    this._upsert({ ...n, archived: true });
    try {
      this._upsert(await this.client.archive(id));
      this._setStatus('Archived');
    } catch (error) {
      this._upsert({ ...n });
      this._setStatus(`Could not archive: ${error.message}`);
    }
    this.refreshCount();
  }

  async _readAll() {
    const category = this.filter.category || undefined;
    for (const n of [...this.items.values()]) {
      if (!n.read && (!category || n.category === category)) this._upsert({ ...n, read: true });
    }
    try {
      const { read } = await this.client.readAll(category);
      this._setStatus(read ? `Marked ${read} read` : 'Nothing unread');
    } catch (error) {
      this._setStatus(`Could not mark all read: ${error.message}`);
      this.reload();
    }
    this.refreshCount();
  }

  /** Opening a notification reads it; a deep link is followed after the engagement is on its way. */
  _open(n, url, actionId = null) {
    this.client.engagement(n.id, actionId ? 'clicked' : 'opened', actionId);
    if (!n.read) this._toggleRead(n.id);
    if (url) this.navigate(url);
  }

  // ---- DOM ----------------------------------------------------------------------------------

  _build(mount) {
    const doc = this.document;
    const uid = `nf-center-${++instances}`;
    this.root = doc.createElement('div');
    this.root.className = 'nf-center';
    this.root.dataset.unread = '0';

    this.bell = doc.createElement('button');
    this.bell.type = 'button';
    this.bell.className = 'nf-bell';
    this.bell.setAttribute('aria-haspopup', 'dialog');
    this.bell.setAttribute('aria-expanded', 'false');
    this.bell.setAttribute('aria-controls', `${uid}-panel`);
    this.bell.setAttribute('aria-label', 'Notifications, none unread');
    const icon = this._icon(ICONS.bell);
    icon.classList.add('nf-bell-icon');
    this.badge = doc.createElement('span');
    this.badge.className = 'nf-badge';
    this.badge.setAttribute('aria-hidden', 'true'); // the bell's aria-label carries the count
    this.badge.hidden = true;
    this.badge.textContent = '0';
    this.bell.append(icon, this.badge);
    this.bell.addEventListener('click', () => this.toggle());

    this.panel = doc.createElement('section');
    this.panel.className = 'nf-panel';
    this.panel.id = `${uid}-panel`;
    this.panel.hidden = true;
    this.panel.setAttribute('role', 'dialog');
    this.panel.setAttribute('aria-labelledby', `${uid}-heading`);
    this.panel.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        event.stopPropagation();
        this.close({ focusBell: true });
      }
    });

    // A plain div: a <header> here would be a second banner landmark beside the page's own.
    const header = doc.createElement('div');
    header.className = 'nf-panel-header';
    const heading = doc.createElement('h2');
    heading.id = `${uid}-heading`;
    heading.textContent = 'Notifications';
    this.readAllButton = doc.createElement('button');
    this.readAllButton.type = 'button';
    this.readAllButton.className = 'nf-read-all';
    this.readAllButton.textContent = 'Mark all read';
    this.readAllButton.disabled = true;
    this.readAllButton.addEventListener('click', () => this._readAll());
    header.append(heading, this.readAllButton);

    const filters = doc.createElement('div');
    filters.className = 'nf-filters';
    const stateGroup = doc.createElement('div');
    stateGroup.className = 'nf-state-filter';
    stateGroup.setAttribute('role', 'group');
    stateGroup.setAttribute('aria-label', 'Show');
    for (const [value, label] of STATES) {
      const button = doc.createElement('button');
      button.type = 'button';
      button.dataset.state = value;
      button.textContent = label;
      button.setAttribute('aria-pressed', String(value === this.filter.state));
      button.addEventListener('click', () => this._setFilter({ state: value }));
      stateGroup.appendChild(button);
    }
    const categoryLabel = doc.createElement('label');
    categoryLabel.className = 'nf-category-filter';
    categoryLabel.append('Category ');
    this.categorySelect = doc.createElement('select');
    const all = doc.createElement('option');
    all.value = '';
    all.textContent = 'All categories';
    this.categorySelect.appendChild(all);
    this.categorySelect.addEventListener('change', () => this._setFilter({ category: this.categorySelect.value }));
    categoryLabel.appendChild(this.categorySelect);
    filters.append(stateGroup, categoryLabel);

    this.scroller = doc.createElement('div');
    this.scroller.className = 'nf-scroll';
    this.list = doc.createElement('ul');
    this.list.className = 'nf-list';
    this.list.setAttribute('aria-label', 'Notifications');
    this.list.setAttribute('aria-busy', 'false');
    this.empty = doc.createElement('p');
    this.empty.className = 'nf-empty';
    this.empty.textContent = 'Nothing here.';
    this.empty.hidden = true;
    this.sentinel = doc.createElement('div');
    this.sentinel.className = 'nf-sentinel';
    this.sentinel.setAttribute('aria-hidden', 'true');
    this.spinner = doc.createElement('p');
    this.spinner.className = 'nf-loading';
    this.spinner.textContent = 'Loading…';
    this.spinner.hidden = true;
    this.scroller.append(this.list, this.empty, this.spinner, this.sentinel);

    this.status = doc.createElement('p');
    this.status.className = 'nf-status';
    this.status.setAttribute('role', 'status');

    this.panel.append(header, filters, this.scroller, this.status);
    this.root.append(this.bell, this.panel);
    mount.appendChild(this.root);

    // Infinite scroll: the sentinel after the last item coming into view of the scroller loads the
    // next page; 200px early, so the user rarely waits at the bottom.
    this._observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && this.isOpen && this.loaded) this.loadMore();
    }, { root: this.scroller, rootMargin: '0px 0px 200px 0px' });
    this._observer.observe(this.sentinel);

    this._onOutside = (event) => {
      if (!this.root.contains(event.target)) this.close();
    };
  }

  _listen() {
    this._unsubscribe.push(
      this.client.on('event', (event) => this.applyEvent(event)),
      this.client.on('resync', () => this.reload()),
    );
  }

  _setFilter(change) {
    this.filter = { ...this.filter, ...change };
    for (const button of this.panel.querySelectorAll('.nf-state-filter button')) {
      button.setAttribute('aria-pressed', String(button.dataset.state === this.filter.state));
    }
    this.categorySelect.value = this.filter.category;
    this.reload();
  }

  _maybeLoadMore() {
    if (!this.isOpen || !this.loaded || !this.nextCursor || this.loading) return;
    const view = this.scroller.getBoundingClientRect();
    const at = this.sentinel.getBoundingClientRect();
    if (at.top <= view.bottom + 200) this.loadMore();
  }

  _setBusy(busy) {
    this.list.setAttribute('aria-busy', String(busy));
    this.spinner.hidden = !busy;
  }

  _setStatus(message) {
    this.status.textContent = message;
  }

  _renderEmpty() {
    this.empty.hidden = !(this.loaded && this.items.size === 0);
  }

  _renderTimes() {
    for (const time of this.list.querySelectorAll('time[datetime]')) {
      time.textContent = relativeTime(time.getAttribute('datetime'));
    }
  }

  /** A decorative inline SVG icon (our constant path data; never notification data). */
  _icon(d) {
    const svg = this.document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    const path = this.document.createElementNS(SVG, 'path');
    path.setAttribute('d', d);
    svg.appendChild(path);
    return svg;
  }

  /** Puts the item's element where it belongs in newest-first order. */
  _position(el, n) {
    const before = [...this.list.children].find((other) => {
      const o = this.items.get(other.dataset.id);
      return other !== el && o && compare(n, o) < 0;
    });
    if (el.nextSibling !== before || el.parentNode !== this.list) this.list.insertBefore(el, before || null);
  }

  /** (Re)fills one list item - text only. */
  _renderItem(n, existing) {
    const doc = this.document;
    const base = doc.baseURI;
    const li = existing || doc.createElement('li');
    li.className = 'nf-item';
    li.dataset.id = n.id;
    li.dataset.read = String(!!n.read);
    li.dataset.archived = String(!!n.archived);
    li.dataset.priority = text(n.priority) || 'normal';
    li.dataset.category = text(n.category);
    li.dataset.revision = text(n.revision);
    const parts = [];

    const img = imageElement(doc, n.image_url, 'nf-item-image');
    if (img) parts.push(img);

    const main = doc.createElement('div');
    main.className = 'nf-item-main';
    const meta = doc.createElement('div');
    meta.className = 'nf-item-meta';
    const category = doc.createElement('span');
    category.className = 'nf-item-category';
    category.textContent = text(n.category);
    const time = doc.createElement('time');
    time.setAttribute('datetime', text(n.created_at));
    dateFormat ??= new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'numeric', day: 'numeric',
      hour: 'numeric', minute: 'numeric', second: 'numeric' });
    time.title = Number.isFinite(Date.parse(n.created_at)) ? dateFormat.format(new Date(n.created_at)) : '';
    time.textContent = relativeTime(n.created_at);
    meta.append(category, time);

    const titleRow = doc.createElement('div');
    titleRow.className = 'nf-item-title-row';
    const link = safeUrl(n.deep_link, base);
    const title = doc.createElement(link ? 'a' : 'span');
    title.className = 'nf-item-title';
    title.textContent = text(n.title);
    if (link) {
      title.href = link;
      title.rel = 'noopener noreferrer';
      title.addEventListener('click', (event) => {
        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return; // new tab: let it be
        event.preventDefault();
        this._open(n, link);
      });
    }
    titleRow.appendChild(title);
    if (Number(n.merge_count) > 1) {
      const merged = doc.createElement('span');
      merged.className = 'nf-item-count';
      merged.title = `${n.merge_count} notifications`;
      merged.textContent = String(n.merge_count);
      titleRow.appendChild(merged);
    }
    const body = doc.createElement('p');
    body.className = 'nf-item-body';
    body.textContent = text(n.body);
    main.append(meta, titleRow, body);

    const actions = Array.isArray(n.actions) ? n.actions.filter((a) => a && a.id !== undefined && a.id !== null) : [];
    if (actions.length) {
      const row = doc.createElement('div');
      row.className = 'nf-item-actions';
      for (const action of actions) {
        const button = doc.createElement('button');
        button.type = 'button';
        button.className = 'nf-action';
        button.dataset.actionId = text(action.id);
        button.textContent = text(action.title ?? action.id);
        button.addEventListener('click', () => this._open(n, actionUrl(action, base) || link, text(action.id)));
        row.appendChild(button);
      }
      main.appendChild(row);
    }
    parts.push(main);

    const controls = doc.createElement('div');
    controls.className = 'nf-item-controls';
    const toggle = doc.createElement('button');
    toggle.type = 'button';
    toggle.className = 'nf-toggle-read';
    toggle.setAttribute('aria-label', n.read ? 'Mark as unread' : 'Mark as read');
    toggle.title = toggle.getAttribute('aria-label');
    toggle.appendChild(this._icon(n.read ? ICONS.unread : ICONS.read));
    toggle.addEventListener('click', () => this._toggleRead(n.id));
    controls.appendChild(toggle);
    if (!n.archived) {
      const archive = doc.createElement('button');
      archive.type = 'button';
      archive.className = 'nf-archive';
      archive.setAttribute('aria-label', 'Archive');
      archive.title = 'Archive';
      archive.appendChild(this._icon(ICONS.archive));
      archive.addEventListener('click', () => this._archive(n.id));
      controls.appendChild(archive);
    }
    parts.push(controls);

    li.replaceChildren(...parts);
    return li;
  }
}

export default NotificationCenter;
