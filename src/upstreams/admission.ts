import type { Clock } from '../clock.js'
import { realClock } from '../clock.js'

export interface AdmissionLimits {
  /** Requests outstanding at once (0 = no cap). */
  readonly maxRequests: number
  /** Requests that may wait for a slot; beyond it they are refused at once. */
  readonly queueSize: number
  readonly queueTimeoutMs: number
}

interface Waiter { admit(): void; timer: unknown }

/**
 * A pool's max_requests gate with a short FIFO queue. One instance lives as long as the pool's
 * name stays in the config: a reload hands it to the new Pool object, which passes its own
 * limits on each call, so requests admitted under the old config still count, the limit is
 * never admitted twice, and a reload that is built but not applied changes nothing.
 */
export class Admission {
  private active = 0
  private readonly waiters: Waiter[] = []

  constructor(private readonly clock: Clock = realClock) {}

  get inFlight(): number { return this.active }
  get queued(): number { return this.waiters.length }

  /** True at once when there is room; a promise of true when a slot frees up; false when the queue is full or the wait timed out. */
  admit(limits: AdmissionLimits): boolean | Promise<boolean> {
    const max = limits.maxRequests
    if (max === 0 || this.active < max) {
      this.active++
      return true
    }
    if (this.waiters.length >= limits.queueSize) return false
    return new Promise<boolean>((resolve) => {
      const w: Waiter = {
        admit: () => { this.clock.clearTimeout(w.timer); this.active++; resolve(true) },
        timer: this.clock.setTimeout(() => {
          const i = this.waiters.indexOf(w)
          if (i >= 0) this.waiters.splice(i, 1)
          resolve(false)
        }, limits.queueTimeoutMs)
      }
      this.waiters.push(w)
    })
  }

  /** Frees a slot taken by admit(); the oldest waiter gets it while the current limits allow. */
  release(limits: AdmissionLimits): void {
    this.active--
    while (this.waiters.length > 0 && (limits.maxRequests === 0 || this.active < limits.maxRequests)) this.waiters.shift()?.admit()
  }
}
