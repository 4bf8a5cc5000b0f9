// One notification's item in the center's list, and the icons of the center (plain ES module, no
// build step). Notification data is written with textContent and non-URL attributes only.

import { fullDate, relativeTime } from './dates.js';
import { imageElement, safeUrl } from './safe-url.js';

const SVG = 'http://www.w3.org/2000/svg';
// Icons as SVG paths: emoji and symbol glyphs are missing from many system fonts.
export const ICONS = Object.freeze({
  bell: 'M12 2a6 6 0 0 0-6 6v4l-2 3v1h16v-1l-2-3V8a6 6 0 0 0-6-6zm-2 16a2 2 0 0 0 4 0z',
  read: 'M12 6a6 6 0 1 0 0 12 6 6 0 0 0 0-12z', // filled dot: unread, click to read
  unread: 'M12 6a6 6 0 1 0 0 12 6 6 0 0 0 0-12zm0 2a4 4 0 1 1 0 8 4 4 0 0 1 0-8z', // ring: read
  archive: 'M3 4h18v4H3zm1 5h16v11H4zm5 3v2h6v-2z',
});

function text(value) {
  return value === undefined || value === null ? '' : String(value);
}

/** An action's `action` is a link only when it is an absolute URL or a root-relative path; else a verb. */
function actionUrl(action, base) {
  const target = text(action?.action);
  if (!/^([a-z][a-z0-9+.-]*:|\/(?!\/))/i.test(target)) return null;
  return safeUrl(target, base);
}

/** A decorative inline SVG icon (our constant path data; never notification data). */
export function icon(doc, d) {
  const svg = doc.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const path = doc.createElementNS(SVG, 'path');
  path.setAttribute('d', d);
  svg.appendChild(path);
  return svg;
}

/** (Re)fills the list item of `n` (a new one when `existing` is null) - text only. */
export function renderItem(center, n, existing) {
  const doc = center.document;
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
  time.title = fullDate(n.created_at);
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
      center._open(n, link);
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
      button.addEventListener('click', () => center._open(n, actionUrl(action, base) || link, text(action.id)));
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
  toggle.appendChild(icon(doc, n.read ? ICONS.unread : ICONS.read));
  toggle.addEventListener('click', () => center._toggleRead(n.id));
  controls.appendChild(toggle);
  if (!n.archived) {
    const archive = doc.createElement('button');
    archive.type = 'button';
    archive.className = 'nf-archive';
    archive.setAttribute('aria-label', 'Archive');
    archive.title = 'Archive';
    archive.appendChild(icon(doc, ICONS.archive));
    archive.addEventListener('click', () => center._archive(n.id));
    controls.appendChild(archive);
  }
  parts.push(controls);

  li.replaceChildren(...parts);
  return li;
}
