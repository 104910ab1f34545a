import t from 'tap'
import { connect, constants } from 'node:http2'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, waitFor } from '../fixtures/proxy.js'
import { h2Connect, h2Request } from '../fixtures/h2.js'

const yaml = (upstream: string, extra = ''): string => `
listen: { host: 127.0.0.1, port: 0, h2c: true }
limits: { http2: { max_concurrent_streams: 50, max_resets: 20, reset_window_ms: 10000 } }
pools: { o: { members: [{ url: "${upstream}" }] } }
routes: [{ name: r, match: {}, pool: o${extra} }]
`

t.test('h2c with prior knowledge: proxied like HTTP/1.1, connection-specific fields never cross (RFC 9113 section 8.2.2)', async (t) => {
  const up = await startUpstream('o', (req, res) => {
    // Connection-specific fields from the member must not reach an HTTP/2 client.
    res.writeHead(200, { 'content-type': 'text/plain', connection: 'keep-alive', 'keep-alive': 'timeout=5', 'x-up': 'o' })
    res.end(`${req.method} ${req.url}`)
  })
  const proxy = await startProxy(yaml(up.url))
  t.teardown(async () => { await proxy.close(); await up.close() })
  const a = await h2Request(proxy.url, '/x?q=1', { headers: { 'x-client': 'c', te: 'trailers' } })
  t.equal(a.status, 200)
  t.equal(a.body, 'GET /x?q=1')
  t.equal(a.headers['x-up'], 'o')
  t.equal(a.headers.connection, undefined, 'no Connection in an HTTP/2 answer')
  t.equal(a.headers['keep-alive'], undefined)
  t.equal(a.headers['transfer-encoding'], undefined)
  t.equal(a.headers.via, '1.1 switchyard')
  const seen = up.received[0]
  t.equal(seen.headers.host, proxy.url.slice('http://'.length), ':authority became Host upstream')
  t.equal(seen.headers['x-client'], 'c')
  t.equal(seen.headers.via, '2 switchyard', 'Via names the client protocol, HTTP/2')
  t.equal(seen.headers['x-forwarded-proto'], 'http')
  t.notOk(Object.keys(seen.headers).some((k) => k.startsWith(':')), 'no pseudo-header field upstream')
  t.equal(seen.headers.te, undefined, 'TE is hop-by-hop')
  // HTTP/1.1 on the same port still works.
  const h1 = await fetchText(`${proxy.url}/h1`)
  t.equal(h1.body, 'GET /h1')
})

t.test('h2c: a request body without Content-Length streams to the member; HEAD and GET have none', async (t) => {
  const up = await startUpstream('o', (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => res.end(`${req.method} ${req.headers['content-length'] ?? '-'} ${req.headers['transfer-encoding'] ?? '-'} ${Buffer.concat(chunks).length}`))
  })
  const proxy = await startProxy(yaml(up.url))
  t.teardown(async () => { await proxy.close(); await up.close() })
  const s = await h2Connect(proxy.url)
  t.teardown(() => s.close())
  t.equal((await h2Request(s, '/p', { method: 'POST', body: 'x'.repeat(100000) })).body, 'POST - chunked 100000')
  t.equal((await h2Request(s, '/p', { method: 'PUT', body: 'abc', headers: { 'content-length': '3' } })).body, 'PUT 3 - 3')
  t.equal((await h2Request(s, '/g')).body, 'GET - - 0')
})

t.test(':authority and Host that disagree are a 400 (RFC 9113 section 8.3.1)', async (t) => {
  const up = await startUpstream('o')
  const proxy = await startProxy(yaml(up.url))
  t.teardown(async () => { await proxy.close(); await up.close() })
  const authority = proxy.url.slice('http://'.length)
  const a = await h2Request(proxy.url, '/', { headers: { ':authority': authority, host: 'other.test' } })
  t.equal(a.status, 400)
  t.match(a.body, /:authority and Host differ/)
  t.equal(up.hits, 0)
  const same = await h2Request(proxy.url, '/', { headers: { ':authority': authority, host: authority } })
  t.equal(same.status, 200, 'equal values are fine')
  const hostOnly = await h2Request(proxy.url, '/', { headers: { host: authority } })
  t.equal(hostOnly.status, 200, 'Host alone stands in for :authority')
})

t.test('the listener advertises its stream limit', async (t) => {
  const up = await startUpstream('o')
  const proxy = await startProxy(yaml(up.url))
  t.teardown(async () => { await proxy.close(); await up.close() })
  const s = await h2Connect(proxy.url)
  t.teardown(() => s.close())
  await waitFor(() => s.remoteSettings.maxConcurrentStreams === 50, 2000, 'the SETTINGS frame')
  t.equal(s.remoteSettings.maxConcurrentStreams, 50)
  t.equal(s.remoteSettings.enablePush, false)
})

t.test('rapid reset (CVE-2023-44487): a client that opens and cancels streams in a loop is cut off', async (t) => {
  // The member never answers: every stream is work the client then throws away.
  const up = await startUpstream('o', () => {})
  const proxy = await startProxy(yaml(up.url))
  t.teardown(async () => { await proxy.close(); await up.close() })
  const s = await h2Connect(proxy.url)
  const closed = new Promise<number | undefined>((resolve) => {
    let code: number | undefined
    s.on('goaway', (c) => { code = c })
    s.on('error', () => {})
    s.once('close', () => resolve(code))
  })
  let sent = 0
  for (let i = 0; i < 500 && !s.destroyed && !s.closed; i++) {
    const req = s.request({ ':path': `/r${i}` })
    req.on('error', () => {})
    req.close(constants.NGHTTP2_CANCEL)
    sent++
    if (i % 10 === 9) await new Promise((r) => setImmediate(r))
  }
  const code = await closed
  t.equal(code, constants.NGHTTP2_ENHANCE_YOUR_CALM, 'GOAWAY ENHANCE_YOUR_CALM')
  t.ok(sent < 500, `cut off after ${sent} streams, not allowed to go on`)
  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  t.match(metrics, /switchyard_http2_sessions_closed_total\{listener="127\.0\.0\.1:0",reason="rapid_reset"\} 1/)
})

t.test('a plain listener without h2c answers a prior-knowledge client with GOAWAY HTTP_1_1_REQUIRED', async (t) => {
  const up = await startUpstream('o')
  const proxy = await startProxy(`
listen: { host: 127.0.0.1, port: 0 }
pools: { o: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: o }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const code = await new Promise<number | undefined>((resolve) => {
    const s = connect(proxy.url)
    let c: number | undefined
    s.on('goaway', (err) => { c = err })
    s.on('error', () => {})
    s.on('close', () => resolve(c))
    s.request({ ':path': '/' }).on('error', () => {})
  })
  t.equal(code, constants.NGHTTP2_HTTP_1_1_REQUIRED)
  t.equal(up.hits, 0)
  t.equal((await fetchText(`${proxy.url}/`)).status, 200, 'HTTP/1.1 is served')
})

t.test('HTTP/2 header limits: the same bounds as HTTP/1.1, answered 431', async (t) => {
  const up = await startUpstream('o')
  const proxy = await startProxy(`
listen: { host: 127.0.0.1, port: 0, h2c: true }
limits: { max_header_bytes: 4096 }
pools: { o: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: o }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  t.equal((await h2Request(proxy.url, '/', { headers: { 'x-big': 'a'.repeat(3000) } })).status, 200)
  t.equal((await h2Request(proxy.url, '/', { headers: { 'x-big': 'a'.repeat(5000) } })).status, 431, 'a field list over max_header_bytes')
  const many: Record<string, string> = {}
  for (let i = 0; i < 250; i++) many[`x-h${i}`] = 'v'
  t.equal((await h2Request(proxy.url, '/', { headers: many })).status, 431, 'more than 200 fields')
  t.equal(up.hits, 1)
})
