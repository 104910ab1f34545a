import t from 'tap'
import { randomBytes } from 'node:crypto'
import { startProxy, waitFor } from '../fixtures/proxy.js'
import { sendRaw } from '../fixtures/security.js'
import type { Socket } from 'node:net'
import { deadPort, startUpstream } from '../fixtures/upstream.js'
import { closed, metricValue, openWs, RAW_101, rawRequest, readBytes, readToEnd, roundTrip, startRawMember, startWsUpstream, upgradeHead } from './websocket-fixtures.js'

const one = (url: string, route = ''): string => `
pools: { p: { members: [{ url: "${url}" }] } }
routes: [{ name: r, match: {}, pool: p${route} }]
`

t.test('echo through the proxy: text, binary, and a 3 MiB message both ways with backpressure', async (t) => {
  const up = await startWsUpstream('u')
  const proxy = await startProxy(one(up.url))
  t.teardown(async () => { await proxy.close(); await up.close() })
  const { ws, headers } = await openWs(`${proxy.url}/chat?room=1`, { protocols: ['chat'], headers: { 'x-request-id': 'ws-trace-1' } })
  t.teardown(() => ws.terminate())
  t.equal(headers.upgrade, 'websocket')
  t.match(headers.connection, /upgrade/i)
  t.equal(headers['sec-websocket-protocol'], 'chat', 'the member\'s subprotocol choice reaches the client')
  t.ok(headers['sec-websocket-accept'], 'the member\'s Sec-WebSocket-Accept reaches the client (ws checked it)')
  t.equal(headers.via, '1.1 switchyard')
  t.equal(headers['x-request-id'], 'ws-trace-1')

  const text = await roundTrip(ws, 'hello')
  t.same([text.data.toString(), text.binary], ['hello', false])
  const bin = await roundTrip(ws, Buffer.from([0, 1, 2, 255]))
  t.same([[...bin.data], bin.binary], [[0, 1, 2, 255], true])
  const big = randomBytes(3 * 1024 * 1024)
  const back = await roundTrip(ws, big)
  t.ok(back.data.equals(big), 'a 3 MiB message comes back intact')

  const seen = up.upgrades[0]
  t.equal(seen.url, '/chat?room=1')
  t.equal(seen.headers.upgrade, 'websocket')
  t.match(seen.headers.connection, /upgrade/i)
  t.equal(seen.headers['sec-websocket-protocol'], 'chat')
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(seen.headers['x-forwarded-proto'], 'http')
  t.equal(seen.headers.via, '1.1 switchyard')
  t.equal(seen.headers['x-request-id'], 'ws-trace-1')
  t.equal(seen.headers.host, proxy.url.slice('http://'.length), 'Host preserved (the pool\'s default)')
  ws.close()
  await closed(ws)
})

t.test('fields: Upgrade, Connection and Sec-WebSocket-* pass; other hop-by-hop fields do not; Host per host_header', async (t) => {
  const up = await startWsUpstream('u')
  const proxy = await startProxy(`
pools: { p: { host_header: upstream, members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const { ws } = await openWs(`${proxy.url}/x`, {
    headers: { 'keep-alive': 'timeout=5', te: 'trailers', 'proxy-authorization': 'Basic Zm9v', 'x-forwarded-for': '6.6.6.6', 'x-custom': 'kept' },
    perMessageDeflate: true
  })
  t.teardown(() => ws.terminate())
  const seen = up.upgrades[0].headers
  for (const h of ['keep-alive', 'te', 'proxy-authorization']) t.equal(seen[h], undefined, `${h} is not forwarded`)
  t.equal(seen['x-custom'], 'kept')
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'an untrusted X-Forwarded-For is replaced')
  t.equal(seen['sec-websocket-version'], '13')
  t.ok(seen['sec-websocket-key'])
  t.match(seen['sec-websocket-extensions'], /permessage-deflate/, 'extensions are negotiated end to end')
  t.equal(seen.host, new URL(up.url).host, 'host_header: upstream sends the member\'s host:port')
  t.equal((await roundTrip(ws, 'x'.repeat(100000))).data.toString(), 'x'.repeat(100000), 'compressed frames pass untouched')
})

t.test('bytes right behind either head are not lost; half-close ends the other side after what is queued', async (t) => {
  const member = await startRawMember((socket, _head, rest) => {
    // The 101 and the first bytes of the new protocol in one write.
    socket.write(RAW_101 + 'hello-from-member')
    let got = rest.toString('latin1')
    socket.on('data', (d: Buffer) => { got += d.toString('latin1') })
    socket.on('end', () => socket.end(`member got [${got}]`))
    socket.resume()
  })
  const proxy = await startProxy(one(member.url))
  t.teardown(async () => { await proxy.close(); await member.close() })
  const host = proxy.url.slice('http://'.length)
  const r = await rawRequest(proxy.url, upgradeHead('/raw', host) + 'early-bytes')
  t.equal(r.status, 101)
  t.equal(r.fields.upgrade, 'websocket')
  t.equal(r.fields['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=')
  t.equal(r.fields['content-length'], undefined)
  const first = await readBytes(r.socket, 'hello-from-member'.length, r.rest)
  t.equal(first.toString(), 'hello-from-member', 'what the member sent with its 101 arrives')
  r.socket.write('-more')
  // FIN from the client: the member sees the end after every byte, answers, and ends too.
  r.socket.end()
  const tail = await readToEnd(r.socket)
  t.equal(tail.toString(), 'member got [early-bytes-more]', 'the client\'s early bytes came first; the member answered after the half-close')
  await waitFor(() => r.socket.destroyed || r.socket.readableEnded, 5000, 'the client side closed')
})

t.test('metrics: open tunnels, results, bytes each way, closes by reason; the 101 is counted as a request', async (t) => {
  const member = await startRawMember((socket, _head, rest) => {
    socket.write(RAW_101 + 'abc')
    let n = rest.length
    socket.on('data', (d: Buffer) => { n += d.length; if (n === 10) socket.end('0123456') })
    socket.resume()
  })
  const proxy = await startProxy(one(member.url))
  t.teardown(async () => { await proxy.close(); await member.close() })
  const reg = proxy.app.registry
  const r = await rawRequest(proxy.url, upgradeHead('/m', proxy.url.slice(7)))
  t.equal(r.status, 101)
  t.equal(await metricValue(reg, 'switchyard_websocket_tunnels_open', { route: 'r', pool: 'p' }), 1, 'one tunnel open')
  t.equal(await metricValue(reg, 'switchyard_websocket_tunnels_total', { route: 'r', pool: 'p', result: 'opened' }), 1)
  t.equal(await metricValue(reg, 'switchyard_requests_total', { route: 'r', pool: 'p', method: 'GET', code: '101' }), 1, 'the handshake counts as a request answered 101')
  r.socket.write('0123456789')
  const all = await readToEnd(r.socket, r.rest)
  t.equal(all.toString(), 'abc0123456')
  r.socket.end()
  await waitFor(async () => await metricValue(reg, 'switchyard_websocket_tunnels_open', { route: 'r', pool: 'p' }) === 0, 5000, 'the tunnel closed')
  t.equal(await metricValue(reg, 'switchyard_websocket_bytes_total', { route: 'r', direction: 'upstream' }), 10)
  t.equal(await metricValue(reg, 'switchyard_websocket_bytes_total', { route: 'r', direction: 'downstream' }), 10)
  t.equal(await metricValue(reg, 'switchyard_websocket_tunnels_closed_total', { route: 'r', pool: 'p', reason: 'upstream_closed' }), 1, 'the member ended first')
  t.equal(await metricValue(reg, 'switchyard_requests_in_flight', { route: 'r' }), 0)
  t.equal(await metricValue(reg, 'switchyard_upstream_in_flight', { pool: 'p', member: new URL(member.url).host }), 0, 'the member is no longer held')
})

t.test('a refused member: 502 at once with Via and X-Request-Id; with another member the upgrade goes there', async (t) => {
  const dead = await deadPort()
  const up = await startWsUpstream('live')
  const proxy = await startProxy(`
pools:
  gone: { members: [{ url: "http://127.0.0.1:${dead}" }] }
  mixed:
    balancer: round_robin
    outlier: { consecutive_failures: 1 }
    members: [{ url: "http://127.0.0.1:${dead}", name: dead }, { url: "${up.url}", name: live }]
routes:
  - { name: gone, match: { path_prefix: /gone }, pool: gone }
  - { name: mixed, match: {}, pool: mixed }
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const started = Date.now()
  const err = await openWs(`${proxy.url}/gone`, { headers: { 'x-request-id': 'refused-1' } }).then(() => undefined, (e: { status?: number; headers?: Record<string, string>; body?: string }) => e)
  t.equal(err?.status, 502)
  t.equal(err?.headers?.via, '1.1 switchyard')
  t.equal(err?.headers?.['x-request-id'], 'refused-1')
  t.match(err?.body, /502 Bad Gateway: pool gone: upstream refused the connection/)
  t.ok(Date.now() - started < 2000, 'answered at once, no hang')
  const reg = proxy.app.registry
  t.equal(await metricValue(reg, 'switchyard_websocket_tunnels_total', { route: 'gone', pool: 'gone', result: 'error' }), 1)
  t.equal(await metricValue(reg, 'switchyard_upstream_errors_total', { pool: 'gone', member: `127.0.0.1:${dead}`, kind: 'refused' }), 1)

  // Round robin starts at the dead member: the refused try is retried on the live one.
  for (let i = 0; i < 3; i++) {
    const { ws } = await openWs(`${proxy.url}/m${i}`)
    t.equal((await roundTrip(ws, 'who')).data.toString(), 'live')
    ws.close()
    await closed(ws)
  }
  t.equal(await metricValue(reg, 'switchyard_upstream_errors_total', { pool: 'mixed', member: 'dead', kind: 'refused' }), 1, 'outlier detection ejected the dead member after its first failure')
  t.equal(await metricValue(reg, 'switchyard_retries_total', { route: 'mixed', pool: 'mixed', reason: 'refused' }), 1)
  t.equal(up.upgrades.length, 3)
})

t.test('a member that answers the upgrade with 403: the client gets that 403, body and fields; the connection closes', async (t) => {
  // No 'upgrade' listener: Node hands the upgrade request to the request handler.
  const up = await startUpstream('u', (_req, res) => {
    res.writeHead(403, { 'content-type': 'text/plain', 'x-why': 'origin not allowed', upgrade: 'websocket' })
    res.end('forbidden here')
  })
  const proxy = await startProxy(one(up.url))
  t.teardown(async () => { await proxy.close(); await up.close() })
  const err = await openWs(`${proxy.url}/ws`).then(() => undefined, (e: { status?: number; headers?: Record<string, string>; body?: string }) => e)
  t.equal(err?.status, 403)
  t.equal(err?.body, 'forbidden here')
  t.equal(err?.headers?.['x-why'], 'origin not allowed')
  t.equal(err?.headers?.upgrade, undefined, 'the member\'s Upgrade is hop-by-hop')
  t.equal(err?.headers?.via, '1.1 switchyard')
  const raw = await sendRaw(proxy.url, upgradeHead('/ws', proxy.url.slice(7)))
  t.equal(raw.status, 403)
  t.ok(raw.closedByServer, 'the connection is closed after a refused upgrade')
  t.equal(raw.responses[0]?.body.toString(), 'forbidden here')
  t.equal(await metricValue(proxy.app.registry, 'switchyard_websocket_tunnels_total', { route: 'r', pool: 'p', result: 'refused_by_member' }), 2)
  t.equal(await metricValue(proxy.app.registry, 'switchyard_requests_total', { route: 'r', pool: 'p', method: 'GET', code: '403' }), 2)
})

t.test('a member that never answers: 504 after the pool\'s request timeout', async (t) => {
  const member = await startRawMember(() => { /* reads the head, answers nothing */ })
  const proxy = await startProxy(`
pools: { p: { timeouts: { request_ms: 300 }, members: [{ url: "${member.url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await member.close() })
  const started = Date.now()
  const r = await sendRaw(proxy.url, upgradeHead('/slow', proxy.url.slice(7)), { idleMs: 3000, timeoutMs: 5000 })
  t.equal(r.status, 504)
  t.match(r.responses[0]?.body.toString(), /upstream did not answer in time/)
  t.ok(Date.now() - started >= 250 && Date.now() - started < 3000, 'after the timeout, not before and not never')
  await waitFor(() => member.sockets.size === 0, 5000, 'the member connection closed')
})

t.test('websocket: false forwards the request without its Upgrade (as nginx does), and the connection keeps serving', async (t) => {
  const up = await startWsUpstream('u', (req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' })
    res.end(`plain ${req.method} ${req.url} upgrade=${req.headers.upgrade ?? '-'} connection=${req.headers.connection ?? '-'}`)
  })
  const proxy = await startProxy(one(up.url, ', websocket: false'))
  t.teardown(async () => { await proxy.close(); await up.close() })
  const host = proxy.url.slice(7)
  const r = await sendRaw(proxy.url, [upgradeHead('/a', host) + `GET /b HTTP/1.1\r\nHost: ${host}\r\n\r\n`], { responses: 2 })
  t.equal(r.responses.length, 2, 'the request behind it on the same connection is served too')
  t.equal(r.responses[0]?.status, 426)
  t.equal(r.responses[0]?.body.toString(), 'plain GET /a upgrade=- connection=keep-alive', 'no Upgrade reached the member')
  t.equal(r.responses[1]?.body.toString(), 'plain GET /b upgrade=- connection=keep-alive')
  t.equal(up.upgrades.length, 0)
  t.equal(await metricValue(proxy.app.registry, 'switchyard_websocket_tunnels_total', { route: 'r', pool: 'p', result: 'disabled' }), 1)
  t.equal(await metricValue(proxy.app.registry, 'switchyard_requests_total', { route: 'r', pool: 'p', method: 'GET', code: '426' }), 2, 'counted as plain requests')
})

t.test('Upgrade: h2c (and other protocols) is never forwarded: served as HTTP/1.1, bodies intact', async (t) => {
  const up = await startWsUpstream('u', (req, res) => {
    let n = 0
    req.on('data', (d: Buffer) => { n += d.length })
    req.on('end', () => res.end(`${req.method} ${req.url} upgrade=${req.headers.upgrade ?? '-'} settings=${req.headers['http2-settings'] ?? '-'} body=${n}`))
  })
  const proxy = await startProxy(one(up.url))
  t.teardown(async () => { await proxy.close(); await up.close() })
  const host = proxy.url.slice(7)
  const h2c = `GET /h HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n`
  const post = `POST /p HTTP/1.1\r\nHost: ${host}\r\nConnection: upgrade\r\nUpgrade: h2c\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`
  const other = `GET /o HTTP/1.1\r\nHost: ${host}\r\nConnection: upgrade\r\nUpgrade: foo/2\r\n\r\n`
  const r = await sendRaw(proxy.url, [h2c + post + other], { responses: 3 })
  t.same(r.responses.map((x) => x.status), [200, 200, 200], 'HTTP/1.1 answers, never 101')
  t.equal(r.responses[0]?.body.toString(), 'GET /h upgrade=- settings=- body=0')
  t.equal(r.responses[1]?.body.toString(), 'POST /p upgrade=- settings=- body=5', 'a chunked body behind an Upgrade is read normally')
  t.equal(r.responses[2]?.body.toString(), 'GET /o upgrade=- settings=- body=0')
  t.notOk(r.closedByServer)
  // A WebSocket upgrade that is not a GET is not tunnelled either.
  const put = await sendRaw(proxy.url, upgradeHead('/w', host).replace('GET', 'PUT'), { responses: 1 })
  t.equal(put.responses[0]?.body.toString(), 'PUT /w upgrade=- settings=- body=0')
})

t.test('an upgrade pipelined behind an answer still being written waits for it', async (t) => {
  const up = await startWsUpstream('u', (req, res) => {
    // The first answer is slow, so the upgrade behind it arrives while it is pending.
    setTimeout(() => res.end(`slow ${req.url}`), 100)
  })
  const proxy = await startProxy(one(up.url))
  t.teardown(async () => { await proxy.close(); await up.close() })
  const host = proxy.url.slice(7)
  const r = await rawRequest(proxy.url, `GET /slow HTTP/1.1\r\nHost: ${host}\r\n\r\n` + upgradeHead('/ws', host))
  t.equal(r.status, 200)
  t.teardown(() => r.socket.destroy())
  const rest = await readBytes(r.socket, 200, r.rest)
  t.match(rest.toString('latin1'), /^slow \/slowHTTP\/1\.1 101 Switching Protocols\r\n/, 'the 200 completes first, then the 101')
})

t.test('no route and bad requests behind an Upgrade get the normal path\'s answers', async (t) => {
  const up = await startWsUpstream('u')
  const proxy = await startProxy(`
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: { host: only.test }, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const r = await sendRaw(proxy.url, upgradeHead('/x', 'other.test'), { responses: 1 })
  t.equal(r.status, 404)
  const noHost = await sendRaw(proxy.url, 'GET /x HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
  t.equal(noHost.status, 400)
  t.equal(await metricValue(proxy.app.registry, 'switchyard_unrouted_requests_total', { reason: 'no_route' }), 1)
})

t.test('a refusal of unknown length is relayed chunked and whole', async (t) => {
  const body = 'x'.repeat(300000)
  const up = await startUpstream('u', (_req, res) => {
    res.writeHead(404, { 'content-type': 'text/plain' })
    // No Content-Length: Node sends it chunked, in pieces.
    for (let i = 0; i < body.length; i += 50000) res.write(body.slice(i, i + 50000))
    res.end()
  })
  const proxy = await startProxy(one(up.url))
  t.teardown(async () => { await proxy.close(); await up.close() })
  const r = await sendRaw(proxy.url, upgradeHead('/nope', proxy.url.slice(7)), { idleMs: 2000 })
  t.equal(r.status, 404)
  t.equal(r.responses[0]?.headers['transfer-encoding'], 'chunked')
  t.ok(r.responses[0]?.complete, 'ends with the last chunk')
  t.equal(r.responses[0]?.body.length, body.length)
  t.ok(r.closedByServer)
})

t.test('a client that leaves during the handshake: nothing is left open, nothing crashes', async (t) => {
  let held: Socket | undefined
  const member = await startRawMember((socket) => {
    if (held === undefined) held = socket
    else socket.write(RAW_101)
  })
  const proxy = await startProxy(one(member.url))
  t.teardown(async () => { await proxy.close(); await member.close() })
  const reg = proxy.app.registry
  const r = sendRaw(proxy.url, upgradeHead('/gone', proxy.url.slice(7)), { idleMs: 50 })
  await waitFor(() => held !== undefined, 5000, 'the handshake reached the member')
  await r // the client hung up without an answer
  held?.write(RAW_101 + 'data for nobody')
  await waitFor(() => held?.destroyed === true, 5000, 'the member connection was closed')
  await waitFor(async () => await metricValue(reg, 'switchyard_websocket_tunnels_open', { route: 'r', pool: 'p' }) === 0, 5000, 'no tunnel left open')
  t.equal(await metricValue(reg, 'switchyard_upstream_in_flight', { pool: 'p', member: new URL(member.url).host }), 0, 'the member is not held')
  t.equal(await metricValue(reg, 'switchyard_requests_in_flight', { route: 'r' }), 0)
  // The proxy still serves.
  const next = await rawRequest(proxy.url, upgradeHead('/next', proxy.url.slice(7)))
  t.teardown(() => next.socket.destroy())
  t.equal(next.status, 101)
})
