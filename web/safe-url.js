// URL safety of the browser client's rendering (plain ES module, no build step): notification
// URLs (deep_link, image_url, action links) are used only when https: or same-origin.

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
