/**
 * Time as the resilience code sees it: injectable, so the attempt loop, retry budget, outlier
 * ejection, health checks and backoff are tested with a fake clock instead of sleeps.
 */
export interface Clock {
  /** Milliseconds, monotonic within a process (only differences are meaningful). */
  now(): number
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms)
    t.unref()
    return t
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout)
}
