import type { Counter, Gauge, Histogram } from 'prom-client'

/**
 * prom-client's labels() hashes its label values on every call; on the request path we look the
 * child up once per label combination and keep it (issue 5: precomputed metric label sets).
 * Nested maps, one level per label: a lookup builds no key string.
 */
export class ChildCache<C> {
  private readonly root = new Map<string, unknown>()

  constructor(private readonly make: (...values: string[]) => C) {}

  get(a: string, b = '', c = '', d = ''): C {
    let m1 = this.root.get(a) as Map<string, unknown> | undefined
    if (m1 === undefined) this.root.set(a, m1 = new Map())
    let m2 = m1.get(b) as Map<string, unknown> | undefined
    if (m2 === undefined) m1.set(b, m2 = new Map())
    let m3 = m2.get(c) as Map<string, C> | undefined
    if (m3 === undefined) m2.set(c, m3 = new Map())
    let child = m3.get(d)
    if (child === undefined) {
      child = this.make(a, b, c, d)
      m3.set(d, child)
    }
    return child
  }
}

/**
 * Even a bound prom-client child re-validates and re-hashes its labels on every inc() and
 * observe() (a few µs per request over four series). These children find their series' value
 * record once and update it in place; whenever the record is not where they left it (a reset,
 * or not created yet) they go through prom-client again and find it anew, so what a scrape
 * sees is exactly what prom-client's own children would have counted.
 */
interface ValueRecord { value: number; labels: Record<string, string | number> }
interface HistogramRecord { sum: number; count: number; bucketValues: Record<number, number>; labels: Record<string, string | number> }
interface Internals<R> { hashMap: Record<string, R | undefined> }

function sameLabels(a: Record<string, string | number>, b: Record<string, string | number>): boolean {
  for (const k in b) if (String(a[k]) !== String(b[k])) return false
  for (const k in a) if (!(k in b)) return false
  return true
}

/** The hash under which prom-client keeps this label set's record, if it has one. */
function locate<R extends { labels: Record<string, string | number> }>(metric: Internals<R>, labels: Record<string, string>): string | undefined {
  const map = metric.hashMap
  for (const hash in map) {
    const r = map[hash]
    if (r !== undefined && sameLabels(r.labels, labels)) return hash
  }
  return undefined
}

function labelsOf(names: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {}
  for (let i = 0; i < names.length; i++) labels[names[i]] = values[i]
  return labels
}

export class FastCounterChild {
  private hash: string | undefined
  private record: ValueRecord | undefined
  private readonly labels: Record<string, string>

  constructor(private readonly metric: Counter<string>, names: readonly string[], values: readonly string[]) {
    this.labels = labelsOf(names, values)
  }

  inc(): void {
    const map = (this.metric as unknown as Internals<ValueRecord>).hashMap
    const r = this.record
    if (r !== undefined && map[this.hash as string] === r) {
      r.value += 1
      return
    }
    this.metric.inc(this.labels)
    this.hash = locate(this.metric as unknown as Internals<ValueRecord>, this.labels)
    this.record = this.hash === undefined ? undefined : map[this.hash]
  }
}

export class FastGaugeChild {
  private hash: string | undefined
  private record: ValueRecord | undefined
  private readonly labels: Record<string, string>

  constructor(private readonly metric: Gauge<string>, names: readonly string[], values: readonly string[]) {
    this.labels = labelsOf(names, values)
  }

  inc(): void {
    this.add(1)
  }

  dec(): void {
    this.add(-1)
  }

  private add(delta: number): void {
    const map = (this.metric as unknown as Internals<ValueRecord>).hashMap
    const r = this.record
    if (r !== undefined && map[this.hash as string] === r) {
      r.value += delta
      return
    }
    this.metric.inc(this.labels, delta)
    this.hash = locate(this.metric as unknown as Internals<ValueRecord>, this.labels)
    this.record = this.hash === undefined ? undefined : map[this.hash]
  }
}

export class FastHistogramChild {
  private hash: string | undefined
  private record: HistogramRecord | undefined
  private readonly labels: Record<string, string>
  private readonly bounds: readonly number[]

  constructor(private readonly metric: Histogram<string>, names: readonly string[], values: readonly string[]) {
    this.labels = labelsOf(names, values)
    this.bounds = (metric as unknown as { upperBounds: number[] }).upperBounds
  }

  observe(value: number): void {
    const map = (this.metric as unknown as Internals<HistogramRecord>).hashMap
    const r = this.record
    if (r !== undefined && map[this.hash as string] === r && Number.isFinite(value)) {
      // As prom-client's observe(): the first upper bound at or above the value.
      const bounds = this.bounds
      for (let i = 0; i < bounds.length; i++) {
        const b = bounds[i]
        if (value <= b) {
          r.bucketValues[b] += 1
          break
        }
      }
      r.sum += value
      r.count += 1
      return
    }
    this.metric.observe(this.labels, value)
    this.hash = locate(this.metric as unknown as Internals<HistogramRecord>, this.labels)
    this.record = this.hash === undefined ? undefined : map[this.hash]
  }
}
