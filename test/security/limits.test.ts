/**
 * Resource limits at the edge: slow clients are cut in time, heads and bodies are bounded, a
 * client that never reads costs bounded memory (and should cost bounded time), and per-pool
 * caps hold. See test/integration/overload.test.ts for the max_requests queue and event-loop
 * shedding seen through a normal client.
 */
import { connect } from 'node:net'
import t from 'tap'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, waitFor } from '../fixtures/proxy.js'
import { countBytes, proxyFor, rss, sendRaw } from '../fixtures/security.js'

const req = (...lines: string[]): string => lines.join('\r\n') + '\r\n\r\n'

t.test('slow headers (one byte every 200 ms) are cut within about headers_timeout_ms', async (t) => {
  const up = await startUpstream('u')
  const bytes = countBytes(up)
  t.teardown(() => up.close())
  const proxy = await proxyFor(t, `
limits: { headers_timeout_ms: 1000 }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: p }]
`)
  const head = req('GET /slow HTTP/1.1', 'Host: a.test', `X-Pad: ${'a'.repeat(80)}`)
  // We give up after 4 s: the proxy must have cut us by then.
  const r = await sendRaw(proxy.url, head.split(''), { gapMs: 200, timeoutMs: 4000, idleMs: 4000 })
  const todo = {}
  t.ok(r.closedByServer, `the proxy cut the connection (after ${r.ms} ms)`, todo)
  t.ok(r.closedByServer && r.ms < 3000, 'within ~2-3 s, not minutes', todo)
  t.ok(r.status === 0 || r.status === 408, `no answer or 408 (${r.status})`)
  t.equal(bytes.bytes, 0, 'nothing reached the upstream')
})

t.test('a slow body is cut within about request_timeout_ms, and the upstream request is aborted', async (t) => {
  let complete = 0
  let started = 0
  let closed = 0
  const up = await startUpstream('u', (q, res) => {
    started++
    q.resume()
    q.on('end', () => { complete++; res.end('ok') })
    q.on('close', () => { closed++ })
  })
  t.teardown(() => up.close())
  const proxy = await proxyFor(t, `
limits: { request_timeout_ms: 1500 }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: p }]
`)
  const body = 'x'.repeat(100)
  const r = await sendRaw(proxy.url, [req('POST /slow-body HTTP/1.1', 'Host: a.test', 'Content-Length: 100'), ...body.split('')], { gapMs: 200, timeoutMs: 4500, idleMs: 4500 })
  const todo = {}
  t.ok(r.closedByServer, `the proxy cut the connection (after ${r.ms} ms)`, todo)
  t.ok(r.closedByServer && r.ms < 3500, 'within ~2-3 s', todo)
  if (r.closedByServer && started > 0) await waitFor(() => closed === started, 5000, 'the upstream request to end')
  t.equal(complete, 0, 'the upstream never got a complete request')
})

t.test('head size: 431 over limits.max_header_bytes (16 KiB by default), served under it', async (t) => {
  const up = await startUpstream('u')
  const bytes = countBytes(up)
  t.teardown(() => up.close())
  const proxy = await proxyFor(t, `
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: p }]
`)
  const over = await sendRaw(proxy.url, req('GET /h HTTP/1.1', 'Host: a.test', `X-Big: ${'x'.repeat(17 * 1024)}`), { responses: 1 })
  t.equal(over.status, 431)
  t.ok(over.closedByServer, 'closed')
  t.equal(bytes.bytes, 0, 'nothing upstream')
  const under = await sendRaw(proxy.url, req('GET /h HTTP/1.1', 'Host: a.test', `X-Big: ${'x'.repeat(15 * 1024)}`), { responses: 1 })
  t.equal(under.status, 200)
})

t.test('a body over the route limit: 413, and the upstream never gets the whole body', async (t) => {
  const seen: { url: string; body: number; complete: boolean; closed: boolean }[] = []
  const up = await startUpstream('u', (q, res) => {
    const s = { url: q.url ?? '', body: 0, complete: false, closed: false }
    seen.push(s)
    q.on('data', (d: Buffer) => { s.body += d.length })
    q.on('end', () => { s.complete = true; res.end(`got ${s.body}`) })
    q.on('close', () => { s.closed = true })
  })
  const bytes = countBytes(up)
  t.teardown(() => up.close())
  const proxy = await proxyFor(t, `
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: small, match: {}, pool: p, max_body_bytes: 10240 }]
`)
  const declared = await sendRaw(proxy.url, req('POST /declared HTTP/1.1', 'Host: a.test', 'Content-Length: 20000') + 'x'.repeat(20000), { responses: 1 })
  t.equal(declared.status, 413, 'Content-Length over the limit: 413')
  t.ok(declared.closedByServer, 'and the connection is closed (the rest of the body is not read)')
  t.equal(bytes.bytes, 0, 'nothing reached the upstream')

  const chunk = 'x'.repeat(4096)
  const chunks = Array.from({ length: 25 }, () => `1000\r\n${chunk}\r\n`) // 100 KiB in 4 KiB chunks
  const streamed = await sendRaw(proxy.url, [req('POST /chunked HTTP/1.1', 'Host: a.test', 'Transfer-Encoding: chunked'), ...chunks, '0\r\n\r\n'], { gapMs: 5, responses: 1, timeoutMs: 5000 })
  t.ok(streamed.status === 413 || (streamed.status === 0 && streamed.closedByServer), `chunked over the limit: 413 (or cut) (${streamed.status})`)
  t.ok(streamed.closedByServer, 'and the connection is closed')
  const at = seen.filter((x) => x.url === '/chunked')
  if (at.length > 0) await waitFor(() => at.every((x) => x.closed), 5000, 'the upstream request to end')
  t.ok(at.every((x) => !x.complete && x.body <= 10240), `the upstream request was aborted with at most the limit (${at.map((x) => x.body).join(',') || 'none started'})`)

  const fits = await sendRaw(proxy.url, req('POST /fits HTTP/1.1', 'Host: a.test', 'Content-Length: 10240') + 'x'.repeat(10240), { responses: 1 })
  t.equal(fits.status, 200, 'control: exactly the limit is served')
  t.equal(fits.responses[0]?.body.toString(), 'got 10240')
})

t.test('a client that never reads a 200 MB answer: bounded memory, and bounded time', async (t) => {
  const SIZE = 200 * 1024 * 1024
  let sent = 0
  let upstreamClosed = false
  const piece = Buffer.alloc(64 * 1024, 'x')
  const up = await startUpstream('big', (_q, res) => {
    res.writeHead(200, { 'content-length': String(SIZE), 'content-type': 'application/octet-stream' })
    res.on('close', () => { upstreamClosed = true })
    const pump = (): void => {
      while (sent < SIZE && !res.destroyed) {
        sent += piece.length
        if (!res.write(piece)) { res.once('drain', pump); return }
      }
      if (sent >= SIZE) res.end()
    }
    pump()
  })
  t.teardown(() => up.close())
  const proxy = await proxyFor(t, `
pools: { p: { members: [{ url: "${up.url}" }], timeouts: { request_ms: 1000 } } }
routes: [{ name: all, match: {}, pool: p }]
`)
  const before = rss()
  const { port } = new URL(proxy.url)
  const client = connect(Number(port), '127.0.0.1')
  let clientClosed = false
  client.on('close', () => { clientClosed = true })
  client.on('error', () => { /* cut by the proxy */ })
  t.teardown(() => client.destroy())
  client.pause() // never read
  client.write(req('GET /big HTTP/1.1', 'Host: a.test'))
  // Wait until the upstream is blocked by backpressure: no progress for 500 ms.
  let last = -1
  let still = Date.now()
  await waitFor(() => {
    if (sent !== last) { last = sent; still = Date.now() }
    return sent > 0 && Date.now() - still > 500
  }, 15000, 'the upstream to be held back')
  const grown = rss() - before
  t.ok(sent < 64 * 1024 * 1024, `the upstream was held back after ${(sent / 1048576).toFixed(1)} MiB of 200`)
  t.ok(grown < 100 * 1024 * 1024, `process memory grew by ${(grown / 1048576).toFixed(1)} MiB, well under the 200 MiB answer`)
  // Bounded in time: a client that reads nothing must not hold a connection (and an upstream
  // connection) forever; request_ms bounds each gap in the answer.
  // The client socket is paused, so it cannot see the close itself: check the proxy's side.
  const open = (): Promise<number> => new Promise((resolve) => proxy.app.proxy.server.getConnections((_e, n) => resolve(n)))
  await waitFor(async () => upstreamClosed && (clientClosed || (await open()) === 0), 5000, 'the stalled exchange to be cut').then(
    () => t.pass('the stalled client and its upstream request were cut'),
    () => t.fail('the stalled client and its upstream request were cut'))
})

t.test('per-pool caps: max_connections bounds upstream connections, max_requests sheds the excess with 503', async (t) => {
  const held: (() => void)[] = []
  const up = await startUpstream('u', (_q, res) => { held.push(() => res.end('done')) })
  const bytes = countBytes(up)
  t.teardown(async () => { for (const h of held.splice(0)) h(); await up.close() })
  const proxy = await proxyFor(t, `
pools:
  conns: { members: [{ url: "${up.url}" }], max_connections: 2 }
  reqs: { members: [{ url: "${up.url}" }], max_requests: 2, queue: { size: 0 } }
routes:
  - { name: conns, match: { path_prefix: /conns }, pool: conns }
  - { name: reqs, match: { path_prefix: /reqs }, pool: reqs }
`)
  // max_connections: six concurrent requests, never more than two upstream connections.
  const six = Array.from({ length: 6 }, (_, i) => sendRaw(proxy.url, req(`GET /conns/${i} HTTP/1.1`, 'Host: a.test'), { responses: 1, timeoutMs: 10000, idleMs: 10000 }))
  await waitFor(() => up.hits === 2, 5000, 'two requests upstream')
  t.equal(bytes.connections, 2, 'two upstream connections, the rest wait')
  while (up.hits < 6) {
    held.shift()?.()
    await waitFor(() => held.length > 0 || up.hits === 6, 5000, 'the next queued request')
  }
  for (const h of held.splice(0)) h()
  for (const r of await Promise.all(six)) t.equal(r.status, 200)
  t.equal(bytes.connections, 2, 'still only two connections after six requests')

  // max_requests with no queue: the third concurrent request is shed at once.
  const hitsBefore = up.hits
  const two = [0, 1].map((i) => sendRaw(proxy.url, req(`GET /reqs/${i} HTTP/1.1`, 'Host: a.test'), { responses: 1, timeoutMs: 10000, idleMs: 10000 }))
  await waitFor(() => up.hits === hitsBefore + 2, 5000, 'two requests upstream')
  const shed = await sendRaw(proxy.url, req('GET /reqs/2 HTTP/1.1', 'Host: a.test'), { responses: 1 })
  t.equal(shed.status, 503, 'the third is refused')
  t.equal(shed.responses[0]?.headers['retry-after'], '1', 'with Retry-After')
  t.ok(shed.ms < 1000, `at once (${shed.ms} ms)`)
  t.equal(up.hits, hitsBefore + 2, 'the upstream never saw it')
  for (const h of held.splice(0)) h()
  for (const r of await Promise.all(two)) t.equal(r.status, 200)
})

t.test('a cap on client connections', async (t) => {
  const up = await startUpstream('u')
  t.teardown(() => up.close())
  const proxy = await startProxy(`
limits: { max_connections: 2 }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: p }]
`)
  t.teardown(() => proxy.close())
  const a = connect(Number(new URL(proxy.url).port), '127.0.0.1')
  const b = connect(Number(new URL(proxy.url).port), '127.0.0.1')
  t.teardown(() => { a.destroy(); b.destroy() })
  const third = await sendRaw(proxy.url, req('GET / HTTP/1.1', 'Host: a.test'), { responses: 1 })
  t.ok(third.status === 503 || (third.status === 0 && third.closedByServer), 'the third connection is refused')
})

t.test('event-loop overload: 503 fast while the admin listener answers', async (t) => {
  const up = await startUpstream('u')
  t.teardown(() => up.close())
  const proxy = await proxyFor(t, `
limits: { max_event_loop_delay_ms: 20 }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: p }]
`)
  t.equal((await sendRaw(proxy.url, req('GET / HTTP/1.1', 'Host: a.test'), { responses: 1 })).status, 200, 'served while healthy')
  let shed: Awaited<ReturnType<typeof sendRaw>> | undefined
  let served = 0
  await waitFor(async () => {
    const until = Date.now() + 150
    while (Date.now() < until) { /* hold the event loop, as CPU-bound overload would */ }
    const r = await sendRaw(proxy.url, req('GET /busy HTTP/1.1', 'Host: a.test'), { responses: 1, lingerMs: 0 })
    if (r.status === 503) shed = r
    else if (r.status === 200) served++
    return shed !== undefined
  }, 10000, 'the proxy to shed load')
  t.equal(shed?.status, 503)
  t.ok(shed?.responses[0]?.headers['retry-after'] !== undefined, 'with Retry-After')
  t.ok((shed?.ms ?? Infinity) < 500, `fast (${shed?.ms} ms)`)
  t.equal(up.received.filter((q) => q.url === '/busy').length, served, 'shed requests were never forwarded')
  t.equal((await fetchText(`${proxy.adminUrl}/healthz`)).status, 200, 'the admin listener answers')
  t.equal((await fetchText(`${proxy.adminUrl}/metrics`)).status, 200, 'metrics too')
})
