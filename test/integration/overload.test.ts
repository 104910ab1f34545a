import t from 'tap'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, waitFor, HTTP1_ONLY } from '../fixtures/proxy.js'
import { rawExchange, statusOf } from '../fixtures/raw.js'

t.test('max_requests: a short queue, then 503 with Retry-After; the upstream never sees the excess', async (t) => {
  const held: (() => void)[] = []
  const up = await startUpstream('slow', (_req, res) => { held.push(() => res.end('done')) })
  const proxy = await startProxy(`
pools: { web: { members: [{ url: "${up.url}" }], max_requests: 2, queue: { size: 1, timeout_ms: 5000 } } }
routes: [{ name: all, match: {}, pool: web }]
`)
  t.teardown(async () => { for (const h of held) h(); await proxy.close(); await up.close() })
  const inflight = [fetchText(`${proxy.url}/1`), fetchText(`${proxy.url}/2`)]
  await waitFor(() => up.hits === 2, 5000, 'two requests at the upstream')
  const queued = fetchText(`${proxy.url}/3`)
  await waitFor(async () => JSON.parse((await fetchText(`${proxy.adminUrl}/admin/pools`)).body).pools.web.queued === 1, 5000, 'one queued')
  const rejected = await fetchText(`${proxy.url}/4`)
  t.equal(rejected.status, 503)
  t.equal(rejected.headers['retry-after'], '1')
  t.match(rejected.body, /pool web: too many requests in flight/)
  t.equal(up.hits, 2, 'the queue holds the third; the fourth never reached the upstream')
  held.shift()?.()
  await waitFor(() => up.hits === 3, 5000, 'the queued request to be admitted')
  for (const h of held.splice(0)) h()
  for (const r of await Promise.all([...inflight, queued])) t.equal(r.status, 200)
})

t.test('a repeated Host header is refused', HTTP1_ONLY, async (t) => {
  const up = await startUpstream('u')
  const proxy = await startProxy(`
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: web }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const r = await rawExchange(proxy.url, 'GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n')
  t.equal(statusOf(r), 400)
  t.equal(up.hits, 0)
})

t.test('event-loop overload: the proxy sheds with 503 while the admin listener answers', async (t) => {
  const up = await startUpstream('u')
  const proxy = await startProxy(`
limits: { max_event_loop_delay_ms: 20 }
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: web }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  t.equal((await fetchText(`${proxy.url}/`)).status, 200)
  let shed: { status: number; headers: Record<string, unknown> } | undefined
  await waitFor(async () => {
    const until = Date.now() + 150
    while (Date.now() < until) { /* hold the event loop, as a CPU-bound overload would */ }
    const r = await fetchText(`${proxy.url}/`)
    if (r.status === 503) shed = r
    return shed !== undefined
  }, 10000, 'the proxy to shed load')
  t.equal(shed?.headers['retry-after'], '1')
  t.equal((await fetchText(`${proxy.adminUrl}/healthz`)).status, 200, 'admin still answers')
})
