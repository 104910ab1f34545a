/**
 * Retry amplification: one client request never becomes more upstream requests than the
 * route's retry policy (1 + retries.attempts, on_status, methods) and the pool's retry budget
 * allow, whatever the upstream answers. Counted at the upstreams. There are no hidden retries:
 * not reply-from's own 503 retry, not undici's.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import t from 'tap'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, waitFor, type TestProxy } from '../fixtures/proxy.js'
import { proxyFor, type Teardown } from '../fixtures/security.js'

type Mode = number | 'slow' | 'reset'

async function setup(t: Teardown) {
  const state = { mode: 500 as Mode }
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    req.resume()
    const mode = state.mode
    if (mode === 'reset') { req.socket.destroy(); return }
    if (mode === 'slow') { const timer = setTimeout(() => res.end('late'), 2500); res.on('close', () => clearTimeout(timer)); return }
    res.writeHead(mode, { 'retry-after': '0', 'content-type': 'text/plain' })
    res.end(`status ${mode}`)
  }
  const ups = await Promise.all(['a', 'b', 'c'].map((n) => startUpstream(n, handler)))
  t.teardown(async () => { for (const u of ups) await u.close() })
  const members = ups.map((u) => `{ url: "${u.url}" }`).join(', ')
  const noOutlier = 'outlier: { consecutive_failures: 0 }'
  const proxy = await proxyFor(t, `
pools:
  three: { members: [${members}], ${noOutlier} }
  one: { members: [{ url: "${ups[0].url}" }], ${noOutlier} }
  nobudget: { members: [${members}], ${noOutlier}, retry_budget: { percent: 0, min_per_second: 0 } }
  budget: { members: [${members}], ${noOutlier}, retry_budget: { percent: 20, min_per_second: 0, window_ms: 60000 } }
routes:
  - { name: one, match: { path_prefix: /one }, pool: one, retries: { per_try_timeout_ms: 1000 } }
  - { name: none, match: { path_prefix: /none }, pool: three, retries: { attempts: 0 } }
  - { name: nobudget, match: { path_prefix: /nobudget }, pool: nobudget }
  - { name: budget, match: { path_prefix: /budget }, pool: budget }
  - { name: cached, match: { path_prefix: /cached }, pool: three, cache: { enabled: true } }
  - { name: three, match: {}, pool: three, retries: { per_try_timeout_ms: 1000 } }
`)
  const total = (): number => ups.reduce((n, u) => n + u.hits, 0)
  return { state, ups, proxy, total }
}

/** Resolves once `value()` has not changed for `quietMs` (late retries would show up here). */
async function settled(value: () => number, quietMs = 150): Promise<number> {
  let last = value()
  let since = Date.now()
  await waitFor(() => {
    const v = value()
    if (v !== last) { last = v; since = Date.now() }
    return Date.now() - since >= quietMs
  }, 10000, 'the upstream count to settle')
  return last
}

async function once(proxy: TestProxy, total: () => number, method: string, path: string): Promise<{ status: number; upstream: number }> {
  const before = total()
  const r = await fetchText(`${proxy.url}${path}`, { method, body: method === 'GET' ? undefined : 'payload', headers: { host: 'a.test' } })
  return { status: r.status, upstream: (await settled(total)) - before }
}

t.test('one request, at most 1 + attempts upstream requests, for every answer', async (t) => {
  const s = await setup(t)
  // [mode, method, path, expected upstream requests, expected client status]
  const cases: [Mode, string, string, number, number][] = [
    [500, 'GET', '/x', 1, 500], [500, 'PUT', '/x', 1, 500], [500, 'POST', '/x', 1, 500],
    [501, 'GET', '/x', 1, 501],
    [429, 'GET', '/x', 1, 429], [429, 'POST', '/x', 1, 429],
    // on_status (502, 503, 504) on an idempotent method: every member once, attempts = 2.
    [502, 'GET', '/x', 3, 502], [503, 'GET', '/x', 3, 503], [504, 'GET', '/x', 3, 504],
    [503, 'PUT', '/x', 3, 503], [503, 'DELETE', '/x', 3, 503], [503, 'HEAD', '/x', 3, 503],
    // POST and PATCH are never retried unless the route lists them.
    [502, 'POST', '/x', 1, 502], [503, 'POST', '/x', 1, 503], [504, 'PATCH', '/x', 1, 504],
    // A status is only retried on another member: a one-member pool asks once.
    [503, 'GET', '/one', 1, 503], [502, 'GET', '/one', 1, 502],
    // attempts: 0
    [503, 'GET', '/none', 1, 503],
    // a connection reset before any answer: retried (the upstream may not have acted), POST never.
    ['reset', 'GET', '/x', 3, 502], ['reset', 'GET', '/one', 3, 502], ['reset', 'POST', '/x', 1, 502], ['reset', 'GET', '/none', 1, 502],
    // too slow (per_try_timeout_ms 1000, answer at 2500 ms): 504, never retried (it would multiply load).
    ['slow', 'GET', '/x', 1, 504], ['slow', 'POST', '/x', 1, 504]
  ]
  for (const [mode, method, path, want, status] of cases) {
    s.state.mode = mode
    const r = await once(s.proxy, s.total, method, path)
    t.equal(r.status, status, `${mode} ${method} ${path}: the client gets ${status}`)
    t.equal(r.upstream, want, `${mode} ${method} ${path}: ${want} upstream request(s)`)
  }
})

t.test('a 503 is passed through once: no reply-from retry, no undici retry', async (t) => {
  const s = await setup(t)
  s.state.mode = 503
  for (let i = 0; i < 5; i++) {
    const r = await once(s.proxy, s.total, 'GET', '/one')
    t.equal(r.status, 503)
    t.equal(r.upstream, 1, `request ${i}: one upstream request`)
  }
  t.equal(s.ups[0].hits, 5)
})

t.test('the retry budget caps retries across requests', async (t) => {
  const s = await setup(t)
  s.state.mode = 503
  for (let i = 0; i < 10; i++) {
    const r = await once(s.proxy, s.total, 'GET', '/nobudget')
    t.equal(r.upstream, 1, `budget 0: request ${i} is tried once`)
  }
  const before = s.total()
  const n = 20
  for (let i = 0; i < n; i++) await fetchText(`${s.proxy.url}/budget/${i}`, { headers: { host: 'a.test' } })
  const sent = (await settled(s.total)) - before
  // 20 % of the pool's requests may be retries: at most n + n/5 upstream requests in all.
  t.ok(sent >= n && sent <= n + Math.ceil(n * 0.2), `${n} requests made ${sent} upstream requests (at most ${n + Math.ceil(n * 0.2)})`)
})

t.test('concurrent requests are not multiplied either', async (t) => {
  const s = await setup(t)
  s.state.mode = 503
  const before = s.total()
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => fetchText(`${s.proxy.url}/none/${i}`, { headers: { host: 'a.test' } })))
  t.ok(answers.every((a) => a.status === 503))
  t.equal((await settled(s.total)) - before, 20, 'attempts: 0, 20 requests: 20 upstream requests')
})

t.test('the cache fill path makes no more requests than the plain path', async (t) => {
  const s = await setup(t)
  for (const mode of [500, 502, 503, 504, 429, 'reset'] as Mode[]) {
    s.state.mode = mode
    const r = await once(s.proxy, s.total, 'GET', `/cached/${String(mode)}`)
    t.ok(r.upstream >= 1 && r.upstream <= 3, `${mode} on a caching route: ${r.upstream} upstream request(s), at most 1 + attempts`)
  }
  // Misses of one URL collapse: 10 concurrent clients, one upstream request per try.
  s.state.mode = 200
  const before = s.total()
  await Promise.all(Array.from({ length: 10 }, () => fetchText(`${s.proxy.url}/cached/collapse`, { headers: { host: 'a.test' } })))
  t.ok((await settled(s.total)) - before <= 10, 'never more upstream requests than client requests')
})
