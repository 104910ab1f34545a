/**
 * One pipeline for every upstream exchange: cached routes get the same admission, retries,
 * health accounting and error answers as uncached ones, and each try is recorded once.
 */
import t from 'tap'
import type { ServerResponse } from 'node:http'
import { deadPort, startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, waitFor, type TestProxy, HTTP1_ONLY } from '../fixtures/proxy.js'
import { countBytes, sendRaw } from '../fixtures/security.js'

async function metricValue(proxy: TestProxy, pattern: RegExp): Promise<number> {
  const text = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  const m = pattern.exec(text)
  return m === null ? 0 : Number(m[1])
}

async function member(proxy: TestProxy, pool: string, index: number): Promise<{ failures: number; ejections: number; requests: number; ejected_for_ms: number }> {
  const pools = JSON.parse((await fetchText(`${proxy.adminUrl}/admin/pools`)).body)
  return pools.pools[pool].members[index]
}

t.test('a cached route with a refused member answers every GET, retrying on the other member', async (t) => {
  const dead = await deadPort()
  const good = await startUpstream('good', (req, res) => { res.writeHead(200, { 'cache-control': 'public, max-age=60' }).end(`ok ${req.url}`) })
  const proxy = await startProxy(`
pools:
  web: { members: [{ url: "http://127.0.0.1:${dead}", name: dead }, { url: "${good.url}", name: good }], outlier: { consecutive_failures: 0 } }
routes: [{ name: c, match: {}, pool: web, cache: { enabled: true } }]
`)
  t.teardown(async () => { await proxy.close(); await good.close() })
  const statuses: number[] = []
  for (let i = 0; i < 20; i++) {
    const r = await fetchText(`${proxy.url}/item/${i}`)
    statuses.push(r.status)
    if (r.status !== 200) t.comment(r.body)
  }
  t.same(statuses, new Array(20).fill(200), 'every miss answered 200')
  t.equal(good.hits, 20, 'each miss reached the good member once')
  const hit = await fetchText(`${proxy.url}/item/3`)
  t.equal(hit.headers['x-cache'], 'HIT', 'and was stored')
  const refused = await metricValue(proxy, /switchyard_upstream_errors_total\{pool="web",member="dead",kind="refused"\} (\d+)/)
  const retries = await metricValue(proxy, /switchyard_retries_total\{route="c",pool="web",reason="refused"\} (\d+)/)
  t.ok(refused >= 9, `round robin sent about half the first tries to the dead member (${refused})`)
  t.equal(retries, refused, 'every refused try was retried')
  t.equal((await member(proxy, 'web', 0)).failures, refused, '/admin/pools counts the same failures as the metric')
})

t.test('max_requests holds on cache misses', async (t) => {
  const held: ServerResponse[] = []
  let concurrent = 0
  let peak = 0
  const up = await startUpstream('slow', (_req, res) => {
    concurrent++
    peak = Math.max(peak, concurrent)
    res.on('close', () => { concurrent-- })
    held.push(res)
  })
  const proxy = await startProxy(`
pools: { web: { members: [{ url: "${up.url}" }], max_requests: 2, queue: { size: 0 } } }
routes: [{ name: c, match: {}, pool: web, cache: { enabled: true } }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const pending = [1, 2, 3, 4].map((i) => fetchText(`${proxy.url}/miss/${i}`))
  await waitFor(() => held.length === 2, 5000, 'two misses to reach the upstream')
  const refused = await Promise.race(pending.map((p) => p.then((r) => r)))
  t.equal(refused.status, 503, 'the third and fourth concurrent misses are refused')
  t.match(refused.body, /^503 Service Unavailable: pool web: too many requests in flight/)
  t.equal(refused.headers['retry-after'], '1')
  for (const res of held) res.writeHead(200, { 'cache-control': 'public, max-age=60' }).end('late')
  const all = await Promise.all(pending)
  t.same(all.map((r) => r.status).sort(), [200, 200, 503, 503])
  t.equal(peak, 2, 'the upstream never saw more than max_requests at once')
  t.equal(await metricValue(proxy, /switchyard_unrouted_requests_total\{reason="pool_saturated"\} (\d+)/), 2)
})

t.test('5xx answers on a cached route count toward outlier ejection', async (t) => {
  const bad = await startUpstream('bad', (_req, res) => { res.writeHead(500).end('broken') })
  const good = await startUpstream('good', (_req, res) => { res.writeHead(200, { 'cache-control': 'no-store' }).end('fine') })
  const proxy = await startProxy(`
pools:
  web:
    members: [{ url: "${bad.url}", name: bad }, { url: "${good.url}", name: good }]
    outlier: { consecutive_failures: 3, base_ejection_ms: 60000 }
routes: [{ name: c, match: {}, pool: web, cache: { enabled: true }, retries: { on_status: [] } }]
`)
  t.teardown(async () => { await proxy.close(); await bad.close(); await good.close() })
  for (let i = 0; i < 12; i++) await fetchText(`${proxy.url}/p/${i}`)
  t.equal(bad.hits, 3, 'the failing member got three requests, then was ejected')
  const m = await member(proxy, 'web', 0)
  t.equal(m.ejections, 1)
  t.ok(m.ejected_for_ms > 0, 'and is ejected now')
  t.equal(m.failures, 3)
  t.equal(await metricValue(proxy, /switchyard_upstream_errors_total\{pool="web",member="bad",kind="http_5xx"\} (\d+)/), 3)
  t.equal(await metricValue(proxy, /switchyard_upstream_ejections_total\{pool="web",member="bad"\} (\d+)/), 1)
})

t.test('a failure that is not retried is recorded once: three refused POSTs do not eject at threshold 5', async (t) => {
  const dead = await deadPort()
  const good = await startUpstream('good')
  const proxy = await startProxy(`
pools:
  web:
    balancer: hash
    hash_on: { header: x-user }
    members: [{ url: "http://127.0.0.1:${dead}", name: dead }, { url: "${good.url}", name: good }]
routes: [{ name: api, match: {}, pool: web }]
`)
  t.teardown(async () => { await proxy.close(); await good.close() })
  // Find a hash key that lands on the dead member.
  let key = ''
  for (let i = 0; i < 100 && key === ''; i++) {
    const r = await fetchText(`${proxy.url}/probe`, { method: 'POST', headers: { 'x-user': `u${i}`, 'content-type': 'text/plain' }, body: 'x' })
    if (r.status === 502) key = `u${i}`
  }
  t.not(key, '', 'a key that maps to the refused member')
  for (let i = 0; i < 2; i++) {
    const r = await fetchText(`${proxy.url}/write`, { method: 'POST', headers: { 'x-user': key, 'content-type': 'text/plain' }, body: 'x' })
    t.equal(r.status, 502, 'POST is not retried')
  }
  const m = await member(proxy, 'web', 0)
  t.equal(m.failures, 3, 'three refused POSTs, three failures')
  t.equal(m.ejections, 0, 'not ejected: the default threshold is 5')
  t.equal(await metricValue(proxy, /switchyard_upstream_errors_total\{pool="web",member="dead",kind="refused"\} (\d+)/), 3, 'the metric agrees')
  t.equal(await metricValue(proxy, /switchyard_retries_total\{[^}]*\} (\d+)/), 0, 'no retry was made')
})

t.test('request buffering: a malformed chunked body never reaches the upstream; a trickling body gets 408', HTTP1_ONLY, async (t) => {
  const up = await startUpstream('up')
  const bytes = countBytes(up)
  const proxy = await startProxy(`
limits: { client_body_timeout_ms: 300 }
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: api, match: {}, pool: web }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const bad = await sendRaw(proxy.url, 'POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n', { idleMs: 1000 })
  t.equal(bad.status, 400, 'a broken chunk is refused')
  t.equal(bytes.bytes, 0, 'not one byte reached the upstream, not even the head or the first valid chunk')

  const slow = await sendRaw(proxy.url, ['POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nab'], { idleMs: 3000 })
  t.equal(slow.status, 408, 'a body that stops arriving is answered 408')
  t.ok(slow.closedByServer, 'and its connection closed')
  t.equal(bytes.bytes, 0, 'the upstream never saw the slow request either')

  const ok = await fetchText(`${proxy.url}/upload`, { method: 'POST', body: 'x'.repeat(1000), headers: { 'content-type': 'text/plain' } })
  t.equal(ok.status, 200)
  t.equal(up.received.at(-1)?.bodyBytes, 1000, 'a whole body is forwarded')
})

t.test('a body larger than the buffer streams, and is still cut when it stalls', async (t) => {
  const up = await startUpstream('up', (req, res) => {
    let n = 0
    req.on('data', (c: Buffer) => { n += c.length })
    req.on('end', () => res.end(String(n)))
    req.on('error', () => {})
  })
  const proxy = await startProxy(`
limits: { client_body_timeout_ms: 300 }
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: api, match: {}, pool: web, retries: { buffer_body_bytes: 1024 } }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const big = await fetchText(`${proxy.url}/up`, { method: 'PUT', body: Buffer.alloc(200_000, 97), headers: { 'content-type': 'application/octet-stream' } })
  t.equal(big.body, '200000', 'a 200 kB body streams through whole')
  const stalled = await sendRaw(proxy.url, [`PUT /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5000\r\n\r\n${'a'.repeat(2000)}`], { idleMs: 3000 })
  t.ok(stalled.status === 408 || stalled.closedByServer, `a stalled streaming body is cut (status ${stalled.status})`)
  t.ok(stalled.closedByServer)
})

t.test('header names with underscores are dropped unless underscores_in_headers', async (t) => {
  const up = await startUpstream('up')
  const strict = await startProxy(`
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: web }]
`)
  const lenient = await startProxy(`
limits: { underscores_in_headers: true }
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: web }]
`)
  t.teardown(async () => { await strict.close(); await lenient.close(); await up.close() })
  const a = JSON.parse((await fetchText(`${strict.url}/`, { headers: { 'x_forwarded_for': '6.6.6.6', 'x-ok': '1' } })).body)
  t.equal(a.headers.x_forwarded_for, undefined, 'X_Forwarded_For is dropped by default')
  t.equal(a.headers['x-ok'], '1')
  const b = JSON.parse((await fetchText(`${lenient.url}/`, { headers: { 'x_custom': 'v' } })).body)
  t.equal(b.headers.x_custom, 'v', 'and kept when allowed')
})

t.test('the proxy\'s own answers carry Via and X-Request-Id', async (t) => {
  const dead = await deadPort()
  const proxy = await startProxy(`
pools: { web: { members: [{ url: "http://127.0.0.1:${dead}" }] } }
routes: [{ name: r, match: { path_prefix: /r }, pool: web, cache: { enabled: true } }]
`)
  t.teardown(() => proxy.close())
  for (const path of ['/r/x', '/nowhere']) {
    const r = await fetchText(`${proxy.url}${path}`, { headers: { 'x-request-id': 'abc-123' } })
    t.ok(r.status === 502 || r.status === 404, `${path}: ${r.status}`)
    t.equal(r.headers['x-request-id'], 'abc-123')
    t.equal(r.headers.via, '1.1 switchyard')
    t.match(r.headers['content-type'], /^text\/plain/)
  }
})

t.test('16 keep-alive clients on a cached route: a member killed with SIGKILL costs no request', async (t) => {
  const { spawnCli } = await import('../fixtures/cli.js')
  const ports = [await deadPort(), await deadPort()]
  const members = ports.map((p, i) => spawnCli(['whoami', '--port', String(p), '--name', `m${i}`]))
  t.teardown(() => { for (const m of members) m.child.kill('SIGKILL') })
  for (const m of members) await waitFor(() => m.lines.some((l) => l.includes('listening')), 10000, 'a member to listen')
  const proxy = await startProxy(`
pools:
  web: { members: [{ url: "http://127.0.0.1:${ports[0]}", name: m0 }, { url: "http://127.0.0.1:${ports[1]}", name: m1 }] }
routes: [{ name: c, match: {}, pool: web, cache: { enabled: true } }]
`)
  t.teardown(() => proxy.close())
  const total = 3000
  let sent = 0
  let done = 0
  let failed = 0
  const statuses: Record<string, number> = {}
  const worker = async (): Promise<void> => {
    while (sent < total) {
      sent++
      // Distinct URLs: every request is a miss through the cache interceptor (whoami says no-store anyway).
      const r = await fetchText(`${proxy.url}/item/${sent}`).catch((err: Error) => ({ status: 0, body: err.message, headers: {} }))
      statuses[r.status] = (statuses[r.status] ?? 0) + 1
      if (r.status !== 200) failed++
      if (++done === Math.floor(total / 3)) members[1].child.kill('SIGKILL')
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker))
  t.comment(`requests sent ${total}, failed ${failed}: ${JSON.stringify(statuses)}`)
  t.equal(failed, 0, 'no request failed')
  const m1Errors = (await fetchText(`${proxy.adminUrl}/metrics`)).body.split('\n').filter((l) => l.startsWith('switchyard_upstream_errors_total{pool="web",member="m1"'))
  t.ok(m1Errors.length > 0, `the killed member's failed tries were recorded (${m1Errors.join('; ')})`)
})

t.test('an error answer to a bodyless request keeps the connection; one that leaves a body unread closes it', HTTP1_ONLY, async (t) => {
  const up = await startUpstream('u')
  const proxy = await startProxy(`
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: { host: a.test }, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const r = await sendRaw(proxy.url, 'GET / HTTP/1.1\r\nHost: b.test\r\n\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n', { responses: 2 })
  t.same(r.responses.map((x) => x.status), [404, 200], 'the 404 and the request after it on one connection')
  t.equal(r.responses[0].headers.connection, 'keep-alive')
  const b = await sendRaw(proxy.url, 'POST / HTTP/1.1\r\nHost: b.test\r\nContent-Length: 100\r\n\r\nabc', { idleMs: 1000 })
  t.equal(b.status, 404)
  t.equal(b.responses[0]?.headers.connection, 'close', 'the unread body ends the connection')
})

t.test('review fixes: HEAD on a caching route, 204 and 404 hits, a 5xx refresh counted, status 600, request_ms 0', HTTP1_ONLY, async (t) => {
  const { createServer } = await import('node:net')
  const streams: NodeJS.Timeout[] = []
  const up = await startUpstream('o', (req, res) => {
    const path = req.url ?? '/'
    if (path === '/endless') {
      res.writeHead(200, { 'cache-control': 'no-store' })
      streams.push(setInterval(() => res.write(Buffer.alloc(65536)), 5))
      res.on('close', () => clearInterval(streams.pop()))
      return
    }
    if (path === '/empty') { res.writeHead(204, { 'cache-control': 'max-age=60' }).end(); return }
    if (path === '/missing') { res.writeHead(404, { 'cache-control': 'max-age=60', etag: '"abc"' }).end('nope'); return }
    if (path === '/refresh') {
      refreshes++
      if (refreshes === 1) res.writeHead(200, { 'cache-control': 'max-age=1, stale-while-revalidate=600', age: '5' }).end('old')
      else res.writeHead(500).end('broken')
      return
    }
    res.end('ok')
  })
  let refreshes = 0
  // A raw member that answers status 600.
  const weird = createServer((s) => s.once('data', () => s.write('HTTP/1.1 600 Weird\r\nContent-Length: 2\r\n\r\nhi')))
  await new Promise<void>((r) => weird.listen(0, '127.0.0.1', r))
  const silent = createServer(() => {})
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
  const port = (s: typeof weird): number => (s.address() as { port: number }).port
  const proxy = await startProxy(`
pools:
  o: { members: [{ url: "${up.url}", name: o }] }
  w: { members: [{ url: "http://127.0.0.1:${port(weird)}", name: w }] }
  s: { members: [{ url: "http://127.0.0.1:${port(silent)}", name: s }], timeouts: { request_ms: 0 } }
routes:
  - { name: weird, match: { path_prefix: /weird }, pool: w }
  - { name: slow, match: { path_prefix: /slow }, pool: s, timeout_ms: 300 }
  - { name: c, match: {}, pool: o, cache: { enabled: true } }
`)
  t.teardown(async () => { await proxy.close(); await up.close(); weird.close(); silent.close() })

  const head = await fetchText(`${proxy.url}/endless`, { method: 'HEAD' })
  t.equal(head.status, 200, 'a HEAD miss is answered at its head, not after the (endless) body')

  await fetchText(`${proxy.url}/empty`)
  const empty = await sendRaw(proxy.url, `GET /empty HTTP/1.1\r\nHost: ${new URL(proxy.url).host}\r\n\r\n`, { responses: 1 })
  t.match(empty.text, /x-cache: HIT/i)
  t.notMatch(empty.text, /content-length/i, 'a stored 204 is replayed without Content-Length (RFC 9110 section 8.6)')

  await fetchText(`${proxy.url}/missing`)
  const cond = await fetchText(`${proxy.url}/missing`, { headers: { 'if-none-match': '*' } })
  t.equal(cond.status, 404, 'no 304 from a stored 404 (RFC 9110 section 13.2.1)')
  t.equal(cond.body, 'nope')

  t.equal((await fetchText(`${proxy.url}/refresh`)).body, 'old')
  t.equal((await fetchText(`${proxy.url}/refresh`)).headers['x-cache'], 'STALE', 'stale-while-revalidate starts a background refresh')
  await waitFor(async () => (await member(proxy, 'o', 0)).failures === 1, 5000, 'the refresh\'s 500 to count as a failure')

  const w = await sendRaw(proxy.url, 'GET /weird HTTP/1.1\r\nHost: a.test\r\n\r\n', { responses: 1 })
  t.equal(w.status, 502)
  t.equal(w.responses.length, 1, 'one answer')
  t.equal(await metricValue(proxy, /switchyard_upstream_errors_total\{pool="w",member="w",kind="protocol"\} (\d+)/), 1, 'counted as a protocol error')

  const slow = await fetchText(`${proxy.url}/slow`)
  t.equal(slow.status, 504, 'timeouts.request_ms: 0 leaves the route deadline in force')
})
