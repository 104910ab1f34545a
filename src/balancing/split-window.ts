/**
 * Per-variant request counts, 5xx counts and a latency histogram over a sliding window of whole
 * seconds: a ring of per-second slots, so recording is O(1) (a slot is cleared when its second
 * comes round again) and reading sums the slots still inside the window. No timers.
 */

/** Upper bounds (ms) of the latency buckets; p99 is read as the bound of the bucket it falls in. */
export const WINDOW_LATENCY_MS = [1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, Infinity] as const
const B = WINDOW_LATENCY_MS.length

export interface ArmWindowStats {
  requests: number
  errors: number
  /** 5xx answers over requests (0 without requests). */
  errorRatio: number
  /** The 99th percentile's bucket bound in ms (null without requests; Infinity past the last bound). */
  p99Ms: number | null
}

export class SplitWindow {
  /** Per slot: the second it holds (-1 = empty). */
  private readonly stamps: Float64Array
  /** Per slot and arm: [requests, errors, ...latency buckets]. */
  private readonly cells: Uint32Array
  private readonly stride: number

  constructor(readonly arms: number, readonly seconds: number) {
    this.stamps = new Float64Array(seconds).fill(-1)
    this.stride = 2 + B
    this.cells = new Uint32Array(seconds * arms * this.stride)
  }

  /** Counts one answer of `arm`; returns true when it opened a new second (a moment to evaluate). */
  record(arm: number, status: number, ms: number, nowMs: number): boolean {
    const sec = Math.floor(nowMs / 1000)
    const slot = sec % this.seconds
    let opened = false
    if (this.stamps[slot] !== sec) {
      this.stamps[slot] = sec
      this.cells.fill(0, slot * this.arms * this.stride, (slot + 1) * this.arms * this.stride)
      opened = true
    }
    const base = (slot * this.arms + arm) * this.stride
    this.cells[base]++
    if (status >= 500 && status <= 599) this.cells[base + 1]++
    let b = 0
    while (ms > WINDOW_LATENCY_MS[b]) b++
    this.cells[base + 2 + b]++
    return opened
  }

  /** Each arm's totals over the window ending at `nowMs`. */
  stats(nowMs: number): ArmWindowStats[] {
    const sec = Math.floor(nowMs / 1000)
    const out: ArmWindowStats[] = []
    for (let arm = 0; arm < this.arms; arm++) {
      const hist = new Array<number>(B).fill(0)
      let requests = 0
      let errors = 0
      for (let slot = 0; slot < this.seconds; slot++) {
        const at = this.stamps[slot]
        if (at < 0 || at > sec || at <= sec - this.seconds) continue
        const base = (slot * this.arms + arm) * this.stride
        requests += this.cells[base]
        errors += this.cells[base + 1]
        for (let b = 0; b < B; b++) hist[b] += this.cells[base + 2 + b]
      }
      out.push({ requests, errors, errorRatio: requests === 0 ? 0 : errors / requests, p99Ms: percentile(hist, requests, 0.99) })
    }
    return out
  }

  clear(): void {
    this.stamps.fill(-1)
    this.cells.fill(0)
  }
}

function percentile(hist: readonly number[], total: number, q: number): number | null {
  if (total === 0) return null
  const rank = Math.ceil(total * q)
  let seen = 0
  for (let b = 0; b < B; b++) {
    seen += hist[b]
    if (seen >= rank) return WINDOW_LATENCY_MS[b]
  }
  return Infinity
}
