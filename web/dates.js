// Dates as the notification center shows them (plain ES module, no build step): relative ("5 minutes
// ago") in the list, the full date and time in its tooltip.

// One formatter each, made on first use: building an Intl formatter costs more than formatting with it.
// The date format is Date#toLocaleString's (numeric date and time).
let relativeFormat = null;
let dateFormat = null;

export function relativeTime(iso, now = Date.now()) {
  const then = Date.parse(iso);
  if (!Number.isFinite(then)) return '';
  const seconds = Math.round((then - now) / 1000);
  relativeFormat ??= new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  for (const [unit, size] of [['day', 86400], ['hour', 3600], ['minute', 60]]) {
    if (Math.abs(seconds) >= size) return relativeFormat.format(Math.round(seconds / size), unit);
  }
  return relativeFormat.format(0, 'second');
}

/** The date and time of `iso` in full ('' when it is not one), for the tooltip. */
export function fullDate(iso) {
  dateFormat ??= new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'numeric', day: 'numeric',
    hour: 'numeric', minute: 'numeric', second: 'numeric' });
  return Number.isFinite(Date.parse(iso)) ? dateFormat.format(new Date(iso)) : '';
}
