import t from 'tap'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { ChildCache, FastCounterChild, FastGaugeChild, FastHistogramChild } from '../../src/metrics/label-cache.js'

/** The same metrics on two registries: one fed through prom-client's children, one through ours. */
function twin(r: Registry) {
  return {
    c: new Counter({ name: 'c_total', help: 'c', labelNames: ['a', 'b'] as const, registers: [r] }),
    g: new Gauge({ name: 'g', help: 'g', labelNames: ['a'] as const, registers: [r] }),
    h: new Histogram({ name: 'h_seconds', help: 'h', labelNames: ['a'] as const, buckets: [0.001, 0.01, 0.1, 1], registers: [r] })
  }
}

t.test('fast children expose exactly what prom-client children would, across a reset', async (t) => {
  const ref = new Registry()
  const fast = new Registry()
  const a = twin(ref)
  const b = twin(fast)
  const counters = new ChildCache((x, y) => new FastCounterChild(b.c, ['a', 'b'], [x, y]))
  const gauges = new ChildCache((x) => new FastGaugeChild(b.g, ['a'], [x]))
  const hists = new ChildCache((x) => new FastHistogramChild(b.h, ['a'], [x]))
  const values = [0.0005, 0.001, 0.004, 0.05, 0.5, 2, 30]
  const feed = (): void => {
    for (let i = 0; i < 50; i++) {
      const x = i % 3 === 0 ? 'one' : 'two'
      const y = i % 2 === 0 ? 'p' : 'q'
      a.c.labels(x, y).inc(); counters.get(x, y).inc()
      a.g.labels(x).inc(); gauges.get(x).inc()
      if (i % 4 === 0) { a.g.labels(x).dec(); gauges.get(x).dec() }
      const v = values[i % values.length]
      a.h.labels(x).observe(v); hists.get(x).observe(v)
    }
  }
  feed()
  t.equal(await fast.metrics(), await ref.metrics(), 'same exposition')
  // A reset replaces prom-client's records: the fast children must not keep counting into the old ones.
  ref.resetMetrics()
  fast.resetMetrics()
  t.equal(await fast.metrics(), await ref.metrics(), 'same after a reset')
  feed()
  t.equal(await fast.metrics(), await ref.metrics(), 'same when counting again after a reset')
  t.equal(counters.get('one', 'p'), counters.get('one', 'p'), 'one child per label set')
})
