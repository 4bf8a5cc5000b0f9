// Work nobody sees at once (the closed center's list, engagement reports) waits until the page is
// idle, so it never stands between a live event and the next frame that shows its toast.

export const IDLE_TIMEOUT_MS = 500; // at the latest: a busy or hidden page still gets it done

/**
 * Calls fn(deadline) once the page is idle (requestIdleCallback; a timer where there is none, e.g.
 * Safari, which passes null). Returns the function that cancels it.
 */
export function whenIdle(fn, timeout = IDLE_TIMEOUT_MS) {
  if (!globalThis.requestIdleCallback) {
    const timer = setTimeout(() => fn(null), timeout);
    return () => clearTimeout(timer);
  }
  const idle = requestIdleCallback(fn, { timeout });
  return () => cancelIdleCallback(idle);
}
