// The DOM of the toast manager (plain ES module, no build step): its two aria-live regions and each
// visible toast's element, built from the toast's record.
//
// Security: notification content is only ever written with textContent / setAttribute of
// non-URL attributes; URLs (deep_link, image_url) are used only when https: or same-origin.

import { imageElement, safeUrl } from './safe-url.js';
import { toastDuration } from './toast-data.js';

let domIds = 0;

/** The manager's container and its two regions: critical toasts are announced assertively, others politely. */
export function buildRegions(manager) {
  const doc = manager.document;
  manager.container.classList.add('toast-container');
  manager.alertRegion = doc.createElement('div');
  manager.alertRegion.className = 'toast-region toast-region--assertive';
  manager.alertRegion.setAttribute('role', 'alert');
  manager.alertRegion.setAttribute('aria-live', 'assertive');
  manager.alertRegion.setAttribute('aria-label', 'Critical notifications');
  manager.politeRegion = doc.createElement('div');
  manager.politeRegion.className = 'toast-region toast-region--polite';
  manager.politeRegion.setAttribute('role', 'status');
  manager.politeRegion.setAttribute('aria-live', 'polite');
  manager.politeRegion.setAttribute('aria-label', 'Notifications');
  manager.container.replaceChildren(manager.alertRegion, manager.politeRegion);
}

/** The toast element of `rec`: attributes and listeners that live as long as the toast is visible. */
export function renderToast(manager, rec) {
  const el = manager.document.createElement('div');
  el.className = 'toast';
  el.tabIndex = 0;
  el.setAttribute('data-toast-id', rec.id);
  el.setAttribute('data-state', rec.state);
  el.addEventListener('mouseenter', () => manager._addPause(rec, 'hover'));
  el.addEventListener('mouseleave', () => manager._removePause(rec, 'hover'));
  el.addEventListener('focusin', () => manager._addPause(rec, 'focus'));
  el.addEventListener('focusout', (event) => {
    if (!el.contains(event.relatedTarget)) manager._removePause(rec, 'focus');
  });
  el.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' || event.key === 'Esc') {
      event.preventDefault();
      event.stopPropagation();
      manager.dismiss(rec.id, 'closed');
    }
  });
  rec.el = el;
  fillToast(manager, rec);
  return el;
}

/** (Re)builds the content of rec.el from rec.data - text via textContent only. */
export function fillToast(manager, rec) {
  const doc = manager.document;
  const el = rec.el;
  const d = rec.data;
  const n = ++domIds;
  el.setAttribute('data-priority', d.priority);
  if (d.category) el.setAttribute('data-category', d.category);
  else el.removeAttribute('data-category');
  el.setAttribute('aria-labelledby', `toast-title-${n}`);
  el.setAttribute('aria-describedby', `toast-body-${n}`);
  const duration = toastDuration(rec.data, manager.durations);
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
      button.addEventListener('click', () => manager._act(rec, action.id));
      actions.appendChild(button);
    }
    if (link) {
      const a = doc.createElement('a');
      a.className = 'toast-link';
      a.href = link;
      a.rel = 'noopener noreferrer';
      a.textContent = 'Open';
      a.addEventListener('click', () => manager._act(rec, 'open', { deep_link: link }));
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
  close.addEventListener('click', () => manager.dismiss(rec.id, 'closed'));
  parts.push(close);

  const progress = doc.createElement('div');
  progress.className = 'toast-progress';
  progress.setAttribute('aria-hidden', 'true');
  parts.push(progress);

  el.replaceChildren(...parts);
}

/** Shows the toast's state on its element: the countdown bar stands still while the toast is paused. */
export function showState(el, state) {
  el.dataset.state = state;
  const progress = el.querySelector('.toast-progress');
  if (progress) progress.style.animationPlayState = state === 'paused' ? 'paused' : 'running';
}
