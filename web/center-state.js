// What the notification center knows (plain ES module, no build step).
//
// What it shows comes from two places: pages of GET /api/notifications (cursor pagination,
// newest first) and the live events of NotifyClient, which keep every loaded item current
// (new, merged, read/unread on another device, archived, deleted). The unread count always
// comes from the gateway (GET /api/notifications/unread-count, coalesced after changes): it
// counts notifications no page has loaded, so a local tally would drift.
//
// CenterState holds it, keeps it current and makes the user's changes (optimistic, then confirmed
// or undone); NotificationCenter (center.js) extends it with the bell and the dropdown, and supplies
// what this calls to draw: _changed(id) after an item changed, _renderList() once a page is in,
// _renderEmpty(), _maybeLoadMore(), _setBusy(busy) and _setStatus(message).

const COUNT_DEBOUNCE_MS = 80;

/** Newest first, ties by id descending - the gateway's ORDER BY created_at DESC, id DESC. */
export function compare(a, b) {
  const ta = Date.parse(a.created_at) || 0;
  const tb = Date.parse(b.created_at) || 0;
  if (ta !== tb) return tb - ta;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

export class CenterState {
  /**
   * @param {object} options
   * @param {import('./client.js').NotifyClient} options.client
   * @param {number} [options.pageSize]
   * @param {(url: string) => void} [options.navigate]  follows a deep link (default: location.assign)
   */
  constructor({ client, pageSize = 20, navigate }) {
    this.client = client;
    this.pageSize = pageSize;
    this.navigate = navigate || ((url) => globalThis.location.assign(url));
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
  }

  /** Drops what is loaded and loads the first page (and the count) again: filters, resync. */
  async reload() {
    this._generation += 1;
    this.items.clear();
    this._pending = [];
    this.nextCursor = null;
    this.loaded = false;
    this.loading = null;
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

  _setCounts(counts) {
    this.counts = { total: Number(counts?.total) || 0, by_category: counts?.by_category || {} };
    for (const category of Object.keys(this.counts.by_category)) this._addCategory(category);
  }

  /** Remembers a category seen in an item or the counts; true when it was new. */
  _addCategory(category) {
    if (!category || this.knownCategories.has(category)) return false;
    this.knownCategories.add(category);
    return true;
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
}
