/**
 * Rates over a recent window for GET /admin/status: each call keeps its snapshot's cumulative
 * counters, and the answer compares the current snapshot with one taken about WINDOW_MS ago
 * (or the oldest one at least MIN_WINDOW_MS old). No timer: nothing is sampled while nobody
 * asks, and the first answer has no rates yet (`window_s: null`).
 */
import type { StatusSnapshot } from './status-snapshot.js'

/** The window rates are computed over, when snapshots that old exist. */
export const WINDOW_MS = 10_000
/** A baseline younger than this gives no rates (too noisy). */
export const MIN_WINDOW_MS = 1_000
/** Snapshots older than this are dropped; at most one is kept per SAMPLE_SPACING_MS. */
const KEEP_MS = 60_000
const SAMPLE_SPACING_MS = 250

interface Sample {
  at: number
  counters: Map<string, number>
  latency: Map<string, readonly number[]>
}

const memberKey = (pool: string, member: string): string => `${pool}\u0000${member}`

function sampleOf(s: StatusSnapshot): Sample {
  const counters = new Map<string, number>()
  const latency = new Map<string, readonly number[]>()
  for (const p of s.pools) {
    for (const m of p.members) {
      const k = memberKey(p.name, m.name)
      counters.set(`r\u0000${k}`, m.requests)
      counters.set(`f\u0000${k}`, m.failures)
      latency.set(k, m.latency)
    }
  }
  for (const sp of s.splits) for (const v of sp.variants) counters.set(`s\u0000${sp.name}\u0000${v.name}`, v.assigned)
  for (const [result, n] of Object.entries(s.cache.lookups)) counters.set(`c\u0000${result}`, n)
  return { at: s.at, counters, latency }
}

/**
 * The q-quantile (0..1) of a cumulative histogram, interpolated linearly inside its bucket as
 * Prometheus's histogram_quantile does; in the +Inf bucket, the largest finite bound. Null
 * without observations.
 */
export function histogramQuantile(q: number, le: readonly number[], cumulative: readonly number[]): number | null {
  const total = cumulative[cumulative.length - 1] ?? 0
  if (total <= 0 || le.length === 0 || cumulative.length !== le.length + 1) return null
  const rank = q * total
  for (let i = 0; i < cumulative.length; i++) {
    if (cumulative[i] < rank) continue
    if (i >= le.length) return le[le.length - 1]
    const lower = i === 0 ? 0 : le[i - 1]
    const below = i === 0 ? 0 : cumulative[i - 1]
    const inBucket = cumulative[i] - below
    return inBucket <= 0 ? le[i] : lower + (le[i] - lower) * ((rank - below) / inBucket)
  }
  return le[le.length - 1]
}

/** Served from the cache: a fresh hit, a stale answer, a revalidated copy, or one collapsed onto another fill. */
const CACHE_HITS = ['hit', 'stale', 'revalidated', 'collapsed']
/** Counted as cache lookups for the ratio (bypass is a request the cache does not apply to). */
const CACHE_MISSES = ['miss', 'error']

function hitRatio(get: (result: string) => number): number | null {
  const hits = CACHE_HITS.reduce((n, r) => n + get(r), 0)
  const all = hits + CACHE_MISSES.reduce((n, r) => n + get(r), 0)
  return all > 0 ? hits / all : null
}

const round = (x: number, digits = 3): number => Math.round(x * 10 ** digits) / 10 ** digits

export class StatusWindow {
  private samples: Sample[] = []

  /** The snapshot with rates over the window, shares, ratios and p99s, as GET /admin/status answers. */
  view(s: StatusSnapshot): Record<string, unknown> {
    const now = sampleOf(s)
    const base = this.baseline(now.at)
    this.keep(now)
    const seconds = base === undefined ? null : (now.at - base.at) / 1000
    const delta = (key: string): number | null => {
      if (base === undefined) return null
      const was = base.counters.get(key) ?? 0
      return Math.max(0, (now.counters.get(key) ?? 0) - was)
    }
    const rate = (key: string): number | null => {
      const d = delta(key)
      return d === null || seconds === null ? null : round(d / seconds)
    }
    const toMs = (sec: number | null): number | null => sec === null ? null : round(sec * 1000, 2)

    const pools = s.pools.map((p) => ({
      ...p,
      members: p.members.map(({ latency, ...m }) => {
        const k = memberKey(p.name, m.name)
        let windowLatency: number[] | undefined
        const was = base?.latency.get(k)
        if (was !== undefined && was.length === latency.length) windowLatency = latency.map((v, i) => Math.max(0, v - was[i]))
        // Not in the baseline, or no buckets then (nothing observed yet): everything is in the window.
        else if (base !== undefined) windowLatency = [...latency]
        return {
          ...m,
          rps: rate(`r\u0000${k}`),
          errors_per_s: rate(`f\u0000${k}`),
          p99_ms: windowLatency === undefined ? null : toMs(histogramQuantile(0.99, s.latency_le, windowLatency)),
          p99_ms_total: toMs(histogramQuantile(0.99, s.latency_le, latency))
        }
      })
    }))

    const splits = s.splits.map((sp) => {
      const weights = sp.variants.reduce((n, v) => n + v.weight, 0)
      const total = sp.variants.reduce((n, v) => n + v.assigned, 0)
      const window = sp.variants.map((v) => delta(`s\u0000${sp.name}\u0000${v.name}`))
      const windowTotal = window.reduce<number>((n, d) => n + (d ?? 0), 0)
      return {
        ...sp,
        requests_per_s: base === undefined || seconds === null ? null : round(windowTotal / seconds),
        variants: sp.variants.map((v, i) => ({
          ...v,
          /** The configured share (weight over the split's total weight). */
          weight_share: weights > 0 ? round(v.weight / weights, 4) : 0,
          /** The share of the assignments in the window (null without any). */
          share: windowTotal > 0 ? round((window[i] ?? 0) / windowTotal, 4) : null,
          /** The share of every assignment since start. */
          share_total: total > 0 ? round(v.assigned / total, 4) : null
        }))
      }
    })

    const c = s.cache
    const cache = {
      ...c,
      hit_ratio: base === undefined ? null : hitRatio((r) => delta(`c\u0000${r}`) ?? 0),
      hit_ratio_total: hitRatio((r) => c.lookups[r] ?? 0)
    }
    if (cache.hit_ratio !== null) cache.hit_ratio = round(cache.hit_ratio, 4)
    if (cache.hit_ratio_total !== null) cache.hit_ratio_total = round(cache.hit_ratio_total, 4)

    return {
      generated_at: new Date(s.at).toISOString(),
      window_s: seconds === null ? null : round(seconds, 1),
      listeners: s.listeners,
      routes: s.routes,
      pools,
      splits,
      cache
    }
  }

  /** About WINDOW_MS old if kept, else the oldest one at least MIN_WINDOW_MS old. */
  private baseline(at: number): Sample | undefined {
    let best: Sample | undefined
    for (let i = this.samples.length - 1; i >= 0; i--) {
      const age = at - this.samples[i].at
      if (age < MIN_WINDOW_MS) continue
      best = this.samples[i]
      if (age >= WINDOW_MS) break
    }
    return best
  }

  private keep(s: Sample): void {
    const last = this.samples[this.samples.length - 1]
    if (last !== undefined && s.at - last.at < SAMPLE_SPACING_MS) return
    this.samples.push(s)
    while (this.samples.length > 0 && s.at - this.samples[0].at > KEEP_MS) this.samples.shift()
  }
}
