import t from 'tap'
import { createServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { deadPort, startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, HTTP1_ONLY } from '../fixtures/proxy.js'
import { rawExchange, statusOf } from '../fixtures/raw.js'

t.test('refused -> 502, reset -> 502, timeout -> 504, none available -> 503', async (t) => {
  const dead = await deadPort()
  const hung: Socket[] = []
  // Accepts connections and never answers.
  const silent = createServer((s) => { hung.push(s) })
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
  // Reads the request and resets the connection.
  const resetter = createServer((s) => { s.once('data', () => s.resetAndDestroy()) })
  await new Promise<void>((r) => resetter.listen(0, '127.0.0.1', r))
  const good = await startUpstream('good')
  const proxy = await startProxy(`
pools:
  refused: { members: [{ url: "http://127.0.0.1:${dead}" }] }
  slow: { timeouts: { request_ms: 200 }, members: [{ url: "http://127.0.0.1:${(silent.address() as AddressInfo).port}" }] }
  resets: { members: [{ url: "http://127.0.0.1:${(resetter.address() as AddressInfo).port}" }] }
  empty: { members: [{ url: "${good.url}" }], panic_threshold_percent: 0 }
routes:
  - { name: r1, match: { path_prefix: /refused }, pool: refused }
  - { name: r2, match: { path_prefix: /slow }, pool: slow }
  - { name: r3, match: { path_prefix: /resets }, pool: resets }
  - { name: r4, match: { path_prefix: /empty }, pool: empty }
`)
  t.teardown(async () => {
    await proxy.close()
    for (const s of hung) s.destroy()
    silent.close()
    resetter.close()
    await good.close()
  })
  // Every member down (as an active health check would find them); with panic off, none is eligible.
  const empty = proxy.app.runtime().pools.get('empty')!
  for (const m of empty.members) m.checkUp = false
  empty.recompute()

  const refused = await fetchText(`${proxy.url}/refused`)
  t.equal(refused.status, 502)
  t.equal(refused.body, '502 Bad Gateway: pool refused: upstream refused the connection\n')
  t.match(refused.headers['content-type'], /^text\/plain/)

  const reset = await fetchText(`${proxy.url}/resets`)
  t.equal(reset.status, 502)
  t.match(reset.body, /^502 Bad Gateway: pool resets: upstream (reset|closed) the connection\n$/)

  const slow = await fetchText(`${proxy.url}/slow`)
  t.equal(slow.status, 504)
  t.equal(slow.body, '504 Gateway Timeout: pool slow: upstream did not answer in time\n')

  const none = await fetchText(`${proxy.url}/empty`)
  t.equal(none.status, 503)
  t.equal(none.body, '503 Service Unavailable: pool empty: no upstream available\n')
  t.equal(good.hits, 0)

  for (const r of [refused, reset, slow, none]) t.notMatch(r.body, /at .*\.js|Error:|127\.0\.0\.1/, 'no stack trace or address in the body')

  // The process is still up and serving.
  for (const m of empty.members) m.checkUp = true
  empty.recompute()
  t.equal((await fetchText(`${proxy.url}/empty`)).status, 200)

  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  // Each try is counted once: the first and its two retries (a refused connection on a
  // one-member pool is retried there: usually a stale keep-alive socket).
  t.match(metrics, /switchyard_upstream_errors_total\{pool="refused",member="127\.0\.0\.1:\d+",kind="refused"\} 3/)
  t.match(metrics, /switchyard_retries_total\{route="r1",pool="refused",reason="refused"\} 2/)
  t.match(metrics, /switchyard_upstream_errors_total\{pool="slow",member="127\.0\.0\.1:\d+",kind="timeout"\} 1/)
  t.match(metrics, /switchyard_upstream_errors_total\{pool="resets",member="127\.0\.0\.1:\d+",kind="reset"\} 3/)
  t.match(metrics, /switchyard_upstream_errors_total\{pool="empty",member="",kind="no_member"\} 1/)
  t.match(metrics, /switchyard_requests_total\{route="r2",pool="slow",method="GET",code="504"\} 1/)
})

t.test('an upstream 503 on a one-member pool is passed through once, not retried', async (t) => {
  const up = await startUpstream('u', (_req, res) => { res.writeHead(503, { 'retry-after': '0' }).end('busy') })
  const proxy = await startProxy(`
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const r = await fetchText(`${proxy.url}/`)
  t.equal(r.status, 503)
  t.equal(r.body, 'busy')
  t.equal(up.hits, 1, 'one client request, one upstream request')
})

t.test('client errors: bad host, bad path, unknown route, TRACE, body too large', HTTP1_ONLY, async (t) => {
  const up = await startUpstream('u')
  const proxy = await startProxy(`
pools: { p: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: small, match: { host: small.test }, pool: p, max_body_bytes: 10 }
  - { name: api, match: { host: api.test }, pool: p }
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  t.equal((await fetchText(`${proxy.url}/`, { headers: { host: 'nowhere.test' } })).status, 404)
  t.equal(statusOf(await rawExchange(proxy.url, 'GET /a/%2e%2e/%2e%2e/etc HTTP/1.1\r\nHost: api.test\r\n\r\n')), 400)
  t.equal(statusOf(await rawExchange(proxy.url, 'GET /a/..%2f..%2fetc HTTP/1.1\r\nHost: api.test\r\n\r\n')), 400)
  t.equal((await fetchText(`${proxy.url}/`, { method: 'TRACE', headers: { host: 'api.test' } })).status, 405)
  const big = await fetchText(`${proxy.url}/`, { method: 'POST', headers: { host: 'small.test' }, body: 'x'.repeat(11) })
  t.equal(big.status, 413)
  t.equal(up.hits, 0, 'nothing reached the upstream')
  t.equal((await fetchText(`${proxy.url}/`, { method: 'POST', headers: { host: 'small.test' }, body: 'x'.repeat(10) })).status, 200)
})
