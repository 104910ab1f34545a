/**
 * A retry budget (Envoy's retry_budget, Finagle's RetryBudget): over a sliding window, retries
 * may add at most `percent` of the requests, plus a floor of `minPerSecond`, so retries can
 * absorb a few failures but never multiply an outage.
 */
export class RetryBudget {
  private readonly buckets: number
  private readonly requests: Float64Array
  private readonly retries: Float64Array
  private readonly stamps: Float64Array

  constructor(private readonly percent: number, private readonly minPerSecond: number, private readonly windowMs: number, private readonly now: () => number = Date.now) {
    this.buckets = Math.max(1, Math.round(windowMs / 1000))
    this.requests = new Float64Array(this.buckets)
    this.retries = new Float64Array(this.buckets)
    this.stamps = new Float64Array(this.buckets).fill(-1)
  }

  private slot(): number {
    const second = Math.floor(this.now() / 1000)
    const i = second % this.buckets
    if (this.stamps[i] !== second) {
      this.stamps[i] = second
      this.requests[i] = 0
      this.retries[i] = 0
    }
    return i
  }

  private sums(): { requests: number; retries: number } {
    const second = Math.floor(this.now() / 1000)
    let requests = 0
    let retries = 0
    for (let i = 0; i < this.buckets; i++) {
      if (this.stamps[i] > second - this.buckets) {
        requests += this.requests[i]
        retries += this.retries[i]
      }
    }
    return { requests, retries }
  }

  /** Counts a first try. */
  recordRequest(): void {
    this.requests[this.slot()]++
  }

  /** Takes a retry from the budget if there is room; false means do not retry. */
  tryAcquire(): boolean {
    const i = this.slot()
    const { requests, retries } = this.sums()
    const allowed = Math.max((requests * this.percent) / 100, this.minPerSecond * (this.windowMs / 1000))
    if (retries + 1 > allowed) return false
    this.retries[i]++
    return true
  }
}
