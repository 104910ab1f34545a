/**
 * Time as the lifecycle code sees it: health-check ticks, sidecar backoff. Injected so unit tests
 * drive it with a fake clock (test/fixtures/fake-clock.ts) instead of sleeping (DESIGN.md habit 10).
 * Same shape as the pipeline's Clock, so one fake drives both.
 */
export interface Clock {
  now(): number
  /** Timers are unref'd: a pending check or backoff never keeps the process alive by itself. */
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

/** The real clock: Date.now and Node's timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms)
    t.unref()
    return t
  },
  clearTimeout: (handle) => { if (handle !== undefined) clearTimeout(handle as NodeJS.Timeout) }
}
