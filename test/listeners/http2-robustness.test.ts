/** Regressions from a review of the listeners: each misbehaviour once cost a crash, a leak or a session. */
import t from 'tap'
import { connect as netConnect, createServer as netServer, type AddressInfo } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, waitFor } from '../fixtures/proxy.js'
import { h2Connect, h2Request } from '../fixtures/h2.js'

const pool = (url: string): string => `pools: { o: { members: [{ url: "${url}" }] } }\nroutes: [{ name: r, match: {}, pool: o, max_body_bytes: 1000 }]\n`

t.test('h2c: a reset while the preface is read is absorbed; silence is cut at headers_timeout_ms', async (t) => {
  const up = await startUpstream('o')
  const proxy = await startProxy(`listen: { host: 127.0.0.1, port: 0, h2c: true }\nlimits: { headers_timeout_ms: 500 }\n${pool(up.url)}`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const port = Number(new URL(proxy.url).port)
  await new Promise<void>((resolve) => {
    const c = netConnect(port, '127.0.0.1', () => { c.write('PRI * '); setTimeout(() => { c.resetAndDestroy(); resolve() }, 50) })
    c.on('error', () => {})
  })
  const silent = await new Promise<number>((resolve) => {
    const start = Date.now()
    const c = netConnect(port, '127.0.0.1', () => c.write('PRI * HTTP'))
    c.on('error', () => {})
    c.on('close', () => resolve(Date.now() - start))
  })
  t.ok(silent < 3000, `half a preface, then nothing: closed after ${silent} ms`)
  t.equal((await h2Request(proxy.url, '/alive')).status, 200, 'the proxy is alive and serving')
})

t.test('TLS with h2: an HTTP/1.1 client that stalls its head gets 408 at headers_timeout_ms', async (t) => {
  const up = await startUpstream('o')
  const proxy = await startProxy(`listen: { host: 127.0.0.1, port: 0, tls: { self_signed: true } }\nlimits: { headers_timeout_ms: 500 }\n${pool(up.url)}`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const answer = await new Promise<string>((resolve) => {
    let got = ''
    const c = tlsConnect({ port: Number(new URL(proxy.url).port), host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => c.write('GET / HTTP/1.1\r\nHost: x\r\n'))
    c.on('data', (d: Buffer) => { got += d.toString() })
    c.on('error', () => {})
    c.on('close', () => resolve(got))
  })
  t.match(answer, /^HTTP\/1\.1 408 /)
})

t.test('HTTP/2: an error answer that closes an HTTP/1 connection leaves the session and its other streams alone', async (t) => {
  const up = await startUpstream('o')
  const proxy = await startProxy(`listen: { host: 127.0.0.1, port: 0, h2c: true }\n${pool(up.url)}`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const s = await h2Connect(proxy.url)
  t.teardown(() => s.close())
  t.equal((await h2Request(s, '/big', { method: 'POST', body: 'x'.repeat(5000) })).status, 413)
  for (let i = 0; i < 3; i++) t.equal((await h2Request(s, `/after${i}`)).status, 200, `request ${i} after the 413`)
})

t.test('HTTP/2: a body cut midway is reset as an error, never ended cleanly, and is not counted as a client reset', async (t) => {
  const up = await startUpstream('o', (_req, res) => {
    res.writeHead(200, { 'content-length': '100' })
    res.write('0123456789')
    setTimeout(() => res.socket?.destroy(), 20)
  })
  const proxy = await startProxy(`listen: { host: 127.0.0.1, port: 0, h2c: true }\nlimits: { http2: { max_resets: 3 } }\n${pool(up.url)}`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const s = await h2Connect(proxy.url)
  t.teardown(() => s.close())
  for (let i = 0; i < 6; i++) {
    const r = await h2Request(s, `/cut${i}`).then(() => 'ended', (err: NodeJS.ErrnoException) => err.code)
    t.equal(r, 'ERR_HTTP2_STREAM_ERROR', `cut body ${i}: a stream error for the client`)
  }
  t.notOk(s.destroyed || s.closed, 'six server-side resets do not trip the rapid-reset guard (max_resets 3)')
  t.notMatch((await fetchText(`${proxy.adminUrl}/metrics`)).body, /reason="rapid_reset"\} [1-9]/)
})

t.test('HTTP/2: a member repeating a single-value field (two Content-Types) is relayed, keeping the first', async (t) => {
  const up = await startUpstream('o', (_req, res) => {
    res.writeHead(200, [['content-type', 'text/plain'], ['content-type', 'text/html'], ['x-content-type-options', 'nosniff'], ['x-content-type-options', 'nosniff']].flat())
    res.end('body')
  })
  const proxy = await startProxy(`listen: { host: 127.0.0.1, port: 0, h2c: true }\n${pool(up.url)}`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const a = await h2Request(proxy.url, '/')
  t.equal(a.status, 200)
  t.equal(a.headers['content-type'], 'text/plain')
  t.equal(a.body, 'body')
})

t.test('a member answering an upgrade with a stalled non-101 body leaks no socket when clients leave', async (t) => {
  let memberOpen = 0
  let memberSeen = 0
  const member = netServer((s) => {
    memberOpen++
    memberSeen++
    s.on('close', () => { memberOpen-- })
    s.on('error', () => {})
    s.once('data', () => s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc'))
  })
  await new Promise<void>((resolve) => member.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => member.close(() => resolve())))
  const proxy = await startProxy(`pools: { p: { timeouts: { request_ms: 500 }, members: [{ url: "http://127.0.0.1:${(member.address() as AddressInfo).port}" }] } }\nroutes: [{ name: r, match: {}, pool: p }]\n`)
  t.teardown(() => proxy.close())
  const port = Number(new URL(proxy.url).port)
  for (let i = 0; i < 3; i++) {
    const c = netConnect(port, '127.0.0.1', () => c.write('GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'))
    c.on('error', () => {})
    c.once('data', () => c.destroy())
  }
  await waitFor(() => memberSeen === 3, 5000, 'three upgrades at the member')
  await waitFor(() => proxy.app.listeners.open === 0 && memberOpen === 0, 5000, 'both sides closed')
  t.pass('no socket left on either side')
})

t.test('HTTP/2: a stream whose body never comes, or trickles past request_timeout_ms, gets 408 and frees the member', async (t) => {
  let reached = 0
  const up = await startUpstream('o', (req, res) => { reached++; req.resume(); req.on('end', () => res.end('ok')) })
  const proxy = await startProxy(`listen: { host: 127.0.0.1, port: 0, h2c: true }\nlimits: { request_timeout_ms: 800, client_body_timeout_ms: 300 }\n${pool(up.url)}`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const s = await h2Connect(proxy.url)
  t.teardown(() => s.close())
  const answer = (send: (req: import('node:http2').ClientHttp2Stream) => void): Promise<{ status: number; ms: number }> => new Promise((resolve, reject) => {
    const start = Date.now()
    const req = s.request({ ':method': 'POST', ':path': '/slow' }, { endStream: false })
    req.on('response', (h) => { req.resume(); resolve({ status: Number(h[':status']), ms: Date.now() - start }) })
    req.on('error', reject)
    send(req)
  })
  // HEADERS without END_STREAM, then no DATA at all: the between-reads timeout applies.
  const silent = await answer(() => {})
  t.equal(silent.status, 408, `no body at all: 408 after ${silent.ms} ms`)
  t.ok(silent.ms < 3000)
  // A byte every 150 ms: each gap is inside client_body_timeout_ms, the whole is not inside request_timeout_ms.
  let timer: NodeJS.Timeout | undefined
  t.teardown(() => clearInterval(timer))
  const trickle = await answer((req) => { timer = setInterval(() => { if (!req.closed) req.write('x') }, 150) })
  clearInterval(timer)
  t.equal(trickle.status, 408, `a trickling body: 408 after ${trickle.ms} ms`)
  t.ok(trickle.ms >= 700 && trickle.ms < 3000)
  t.equal((await h2Request(s, '/after')).status, 200, 'the session serves on')
  t.equal(reached, 1, 'neither slow body held a member request (only /after reached it)')
})

t.test('HTTP/2: 102 Processing and 103 Early Hints from the member reach the client before the answer', async (t) => {
  const up = await startUpstream('o', (_req, res) => {
    res.writeProcessing()
    res.writeEarlyHints({ link: '</a.css>; rel=preload; as=style' })
    setTimeout(() => res.end('done'), 20)
  })
  const proxy = await startProxy(`listen: { host: 127.0.0.1, port: 0, h2c: true }\n${pool(up.url)}`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const s = await h2Connect(proxy.url)
  t.teardown(() => s.close())
  const interim: { status: number; link?: string }[] = []
  const final = await new Promise<number>((resolve, reject) => {
    const req = s.request({ ':path': '/hints' })
    req.on('headers', (h) => interim.push({ status: Number(h[':status']), link: h.link as string | undefined }))
    req.on('response', (h) => { req.resume(); req.on('end', () => resolve(Number(h[':status']))) })
    req.on('error', reject)
  })
  t.equal(final, 200)
  t.same(interim, [{ status: 102, link: undefined }, { status: 103, link: '</a.css>; rel=preload; as=style' }], 'both interim answers, in order')
})
