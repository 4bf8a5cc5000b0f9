// Bell with unread badge and the dropdown notification center (plain ES module, no build step).
//
// What it shows, and the user's changes, are CenterState's (center-state.js), which this extends
// with the DOM; each item's element is center-item.js's.
//
// Security: notification data is written with textContent and non-URL attributes only, never
// innerHTML (html_body is deliberately not used here). Links and images are used only when their
// URL is https: or same-origin (safeUrl of safe-url.js).

import { CenterState, compare } from './center-state.js';
import { ICONS, icon, renderItem } from './center-item.js';
import { relativeTime } from './dates.js';
import { whenIdle } from './idle.js';

export const STATES = Object.freeze([
  ['inbox', 'Inbox'], ['unread', 'Unread'], ['read', 'Read'], ['archived', 'Archived'], ['all', 'All'],
]);
let instances = 0;

export class NotificationCenter extends CenterState {
  /**
   * @param {object} options
   * @param {import('./client.js').NotifyClient} options.client
   * @param {Element} options.mount        where the bell (and its dropdown) go
   * @param {number} [options.pageSize]
   * @param {(url: string) => void} [options.navigate]  follows a deep link (default: location.assign)
   */
  constructor({ client, mount, pageSize, navigate } = {}) {
    super({ client, pageSize, navigate });
    this.document = mount.ownerDocument;
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

  /** Also empties the list: what it showed belongs to what was loaded. */
  reload() {
    this._dirty.clear();
    this.list.replaceChildren();
    return super.reload();
  }

  destroy() {
    for (const off of this._unsubscribe) off();
    this._observer?.disconnect();
    clearTimeout(this._countTimer);
    this._renderRequest?.();
    this.document.removeEventListener('pointerdown', this._onOutside, true);
    this.root.remove();
  }

  // ---- rendering ----------------------------------------------------------------------------

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
      if (n) this._position(renderItem(this, n, el), n);
      else el?.remove();
    }
  }

  _setCounts(counts) {
    super._setCounts(counts);
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
    if (!super._addCategory(category)) return;
    const option = this.document.createElement('option');
    option.value = category;
    option.textContent = category;
    const after = [...this.categorySelect.options].find((o) => o.value && o.value > category);
    this.categorySelect.insertBefore(option, after || null);
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
    const bellIcon = icon(doc, ICONS.bell);
    bellIcon.classList.add('nf-bell-icon');
    this.badge = doc.createElement('span');
    this.badge.className = 'nf-badge';
    this.badge.setAttribute('aria-hidden', 'true'); // the bell's aria-label carries the count
    this.badge.hidden = true;
    this.badge.textContent = '0';
    this.bell.append(bellIcon, this.badge);
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

  /** Puts the item's element where it belongs in newest-first order. */
  _position(el, n) {
    const before = [...this.list.children].find((other) => {
      const o = this.items.get(other.dataset.id);
      return other !== el && o && compare(n, o) < 0;
    });
    if (el.nextSibling !== before || el.parentNode !== this.list) this.list.insertBefore(el, before || null);
  }
}

export default NotificationCenter;
