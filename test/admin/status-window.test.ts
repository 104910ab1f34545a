/**
 * The status arithmetic on its own: histogram quantiles as Prometheus computes them, rates over
 * the window between snapshots, split shares and cache hit ratios, workers' snapshots added up,
 * and the reload history.
 */
import t from 'tap'
import { histogramQuantile, StatusWindow } from '../../src/admin/status-window.js'
import { mergeSnapshots } from '../../src/admin/status-merge.js'
import { ReloadHistory, RELOADS_KEPT } from '../../src/admin/reload-history.js'
import type { MemberSnapshot, StatusSnapshot } from '../../src/admin/status-snapshot.js'

const LE = [0.01, 0.1, 1]

/** The parts of a StatusWindow answer these tests read. */
interface View {
  window_s: number | null
  pools: { members: Record<string, unknown>[] }[]
  splits: Record<string, unknown>[]
  cache: Record<string, unknown>
}
const see = (w: StatusWindow, s: StatusSnapshot): View => w.view(s) as unknown as View

function member(name: string, requests: number, latency: number[], extra: Partial<MemberSnapshot> = {}): MemberSnapshot {
  return { name, url: `http://${name}:80`, weight: 1, healthy: true, health_check: 'up', last_check: null, ejected_for_ms: 0, ejections: 0, drained: false, available: true, in_flight: 0, requests, failures: 0, latency, ...extra }
}

function snapshot(at: number, members: MemberSnapshot[], assigned: [number, number], lookups: Record<string, number>): StatusSnapshot {
  return {
    at,
    listeners: [],
    routes: [],
    pools: [{ name: 'web', balancer: 'round_robin', panic: false, in_flight: 0, queued: 0, members }],
    latency_le: LE,
    splits: [{ name: 'hero', route: 'r', variants: [{ name: 'a', pool: 'web', weight: 3, assigned: assigned[0] }, { name: 'b', pool: 'web', weight: 1, assigned: assigned[1] }] }],
    cache: { enabled: true, store: 'memory', entries: 2, bytes: 100, lookups }
  }
}

t.test('histogramQuantile: linear inside the bucket, the last finite bound in +Inf, null when empty', async (t) => {
  t.equal(histogramQuantile(0.99, LE, [0, 0, 0, 0]), null)
  // 100 observations all in (0.01, 0.1]: the 99th is at 0.01 + 0.09 * 0.99.
  t.equal(Math.round((histogramQuantile(0.99, LE, [0, 100, 100, 100]) ?? 0) * 1e6) / 1e6, 0.0991)
  t.equal(histogramQuantile(0.5, LE, [100, 100, 100, 100]), 0.005, 'all in the first bucket: the median is its middle')
  t.equal(histogramQuantile(0.99, LE, [0, 0, 0, 10]), 1, 'all above the last bound: that bound')
  t.equal(histogramQuantile(0.99, LE, [1, 2]), null, 'buckets that do not match the bounds')
})

t.test('StatusWindow: no rates on the first answer, then rates, shares and ratios over the window', async (t) => {
  const w = new StatusWindow()
  const first = see(w, snapshot(1_000_000, [member('a', 10, [0, 10, 10, 10])], [3, 1], { hit: 1, miss: 1 }))
  t.equal(first.window_s, null)
  t.equal(first.pools[0].members[0].rps, null)
  t.equal(first.pools[0].members[0].p99_ms, null)
  t.equal(Math.round(first.pools[0].members[0].p99_ms_total as number), 99, 'p99 since start (0.0991 s)')
  t.match(first.splits[0].variants as unknown[], [{ weight_share: 0.75, share: null, share_total: 0.75 }, { weight_share: 0.25, share: null, share_total: 0.25 }])
  t.match(first.cache, { hit_ratio: null, hit_ratio_total: 0.5 })
  t.notOk('latency' in first.pools[0].members[0], 'raw buckets are not in the answer')

  // Half a second later: too young a baseline for rates.
  t.equal((see(w, snapshot(1_000_500, [member('a', 12, [0, 12, 12, 12])], [3, 1], { hit: 1, miss: 1 }))).window_s, null)

  // 2 s after the first: 20 more requests (all slow), 4 more assignments to b, 6 hits and 2 misses.
  const later = see(w, snapshot(1_002_000, [member('a', 30, [0, 10, 10, 30])], [3, 5], { hit: 7, miss: 3, bypass: 50 }))
  t.equal(later.window_s, 2)
  t.equal(later.pools[0].members[0].rps, 10, '20 requests in 2 s')
  t.equal(later.pools[0].members[0].p99_ms, 1000, 'the window\'s requests were all above the last bound')
  t.match(later.splits[0], { requests_per_s: 2, variants: [{ share: 0, share_total: 0.375 }, { share: 1, share_total: 0.625 }] })
  t.match(later.cache, { hit_ratio: 0.75, hit_ratio_total: 0.7 }, 'bypass is not a lookup the ratio counts')

  // A counter that went down (a worker replaced): no negative rates.
  const dropped = see(w, snapshot(1_004_000, [member('a', 5, [0, 1, 1, 5])], [0, 0], {}))
  t.equal(dropped.pools[0].members[0].rps, 0)
})

t.test('StatusWindow: the baseline is about 10 s old when polled often', async (t) => {
  const w = new StatusWindow()
  for (let s = 0; s <= 30; s += 2) w.view(snapshot(s * 1000, [member('a', s * 10, [0, 0, 0, 0])], [0, 0], {}))
  const v = see(w, snapshot(32_000, [member('a', 320, [0, 0, 0, 0])], [0, 0], {}))
  t.equal(v.window_s, 10)
  t.equal(v.pools[0].members[0].rps, 10)
})

t.test('mergeSnapshots: workers add up; healthy only when every worker says so; drained when any does', async (t) => {
  t.equal(mergeSnapshots([]), undefined)
  const w1 = snapshot(1000, [member('a', 10, [1, 2, 3, 4], { in_flight: 1 }), member('b', 5, [0, 0, 0, 5], { drained: true })], [3, 1], { hit: 2, miss: 1 })
  const w2 = snapshot(2000, [member('a', 20, [2, 2, 2, 2], { healthy: false, health_check: 'down', last_check: 'HTTP 500', in_flight: 2 }), member('b', 1, [0, 0, 0, 1], { drained: true })], [1, 1], { hit: 1, stale: 1 })
  w2.cache.entries = 3
  const m = mergeSnapshots([w1, w2]) as StatusSnapshot
  t.equal(m.at, 2000)
  const [a, b] = m.pools[0].members
  t.match(a, { requests: 30, in_flight: 3, latency: [3, 4, 5, 6], healthy: false, health_check: 'down', last_check: 'HTTP 500', workers: 2, healthy_workers: 1 })
  t.match(b, { requests: 6, drained: true, workers: 2, healthy_workers: 2 })
  t.same(m.splits[0].variants.map((v) => v.assigned), [4, 2])
  t.same(m.cache.lookups, { hit: 3, miss: 1, stale: 1 })
  t.equal(m.cache.entries, 5)
  t.equal(m.cache.bytes, 200)
})

t.test('ReloadHistory: newest first, at most RELOADS_KEPT, failures and thrown reloads kept', async (t) => {
  let now = Date.parse('2026-01-01T00:00:00Z')
  const h = new ReloadHistory(() => now)
  h.add({ ok: true, changes: [{ path: 'pools.web', class: 'live', detail: 'added' }, { path: 'listen', class: 'restart', detail: 'x' }], started: [], stopped: [], rebuilt: [] })
  t.match(h.list(), [{ at: '2026-01-01T00:00:00.000Z', ok: true, summary: { live: 1, rebuild: 0, restart: 1 }, error: null }])
  now += 1000
  await t.rejects(h.record(() => Promise.reject(new Error('boom'))))
  t.match(h.list()[0], { ok: false, error: 'boom', at: '2026-01-01T00:00:01.000Z' })
  for (let i = 0; i < 20; i++) h.add({ ok: false, error: `e${i}` })
  t.equal(h.list().length, RELOADS_KEPT)
  t.equal(h.list()[0].error, 'e19')
})
