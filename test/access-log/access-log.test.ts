/**
 * The access log through a real proxy: lines land in a file (the same sink as stdout), read
 * back and checked field by field against what the upstream and the client saw.
 */
import t from 'tap'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fetchOnce, fetchText, startProxy, waitFor } from '../fixtures/proxy.js'
import { startUpstream, type Handler } from '../fixtures/upstream.js'
import { closed, openWs, roundTrip, startWsUpstream } from '../integration/websocket-fixtures.js'
import { h2Request } from '../fixtures/h2.js'
import { rawExchange, statusOf } from '../fixtures/raw.js'

const dir = mkdtempSync(join(tmpdir(), 'sy-access-'))
let files = 0
const newFile = (): string => join(dir, `access-${++files}.log`)

function read(path: string): string[] {
  if (!existsSync(path)) return []
  return readFileSync(path, 'utf8').split('\n').filter((l) => l !== '')
}

/** Polls until the file has at least `n` lines (writes are asynchronous). */
async function lines(path: string, n: number): Promise<string[]> {
  await waitFor(() => read(path).length >= n, 5000, `${n} access log line(s) in ${path}`)
  return read(path)
}

type Json = Record<string, unknown>
const records = async (path: string, n: number): Promise<Json[]> => (await lines(path, n)).map((l) => JSON.parse(l) as Json)

/** /c... is cacheable, /cap sets a cookie, everything else echoes. */
const handler: Handler = (req, res, self) => {
  req.resume()
  req.on('end', () => {
    const body = `${self.name} ${req.method} ${req.url}`
    const h: Record<string, string> = { 'content-type': 'text/plain', 'x-upstream': self.name }
    if (req.url?.startsWith('/c/') === true) h['cache-control'] = 'public, max-age=60'
    if (req.url === '/cap') h['set-cookie'] = 'session=secret; Path=/'
    res.writeHead(200, h)
    res.end(body)
  })
}

t.test('combined: the nginx line exactly, for a proxied GET', async (t) => {
  const up = await startUpstream('u1', handler)
  const file = newFile()
  const proxy = await startProxy(`
logging: { access_log: { enabled: true, format: combined, path: "${file}" } }
pools: { p: { members: [{ name: m1, url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const res = await fetchText(`${proxy.url}/a/b?x=1&y=%222%22`, { headers: { referer: 'http://ref.test/"q"', 'user-agent': 'tester/1.0 (\\x)' } })
  t.equal(res.status, 200)
  const [line] = await lines(file, 1)
  const m = /^127\.0\.0\.1 - - \[(\d{2})\/([A-Z][a-z]{2})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\] "GET \/a\/b\?x=1&y=%222%22 HTTP\/1\.1" 200 (\d+) "http:\/\/ref\.test\/\\x22q\\x22" "tester\/1\.0 \(\\x5Cx\)"$/.exec(line)
  t.ok(m, `a combined line, quotes and backslashes escaped as nginx does: ${line}`)
  t.equal(Number(m?.[8]), Buffer.byteLength(res.body), '$body_bytes_sent is the body the client got')
  t.equal(up.hits, 1)
})

t.test('extended: combined, then the proxy\'s fields as key="value"', async (t) => {
  const up = await startUpstream('u1', handler)
  const file = newFile()
  const proxy = await startProxy(`
logging: { access_log: { enabled: true, format: extended, path: "${file}", headers: { request: [x-trace] } } }
pools: { p: { members: [{ name: m1, url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  await fetchText(`${proxy.url}/e`, { headers: { 'x-request-id': 'rid-42', 'x-trace': 't-1' } })
  const [line] = await lines(file, 1)
  t.match(line, /^127\.0\.0\.1 - - \[[^\]]+\] "GET \/e HTTP\/1\.1" 200 \d+ "-" "[^"]*" request_id="rid-42" route="r" pool="p" member="m1" variant="-" cache="-" bytes_in=0 duration_ms=[\d.]+ upstream_ms=[\d.]+ firewall="-" anonymous=0 req\.x-trace="t-1"$/)
})

t.test('json: route, pool, member, cache, variant, bytes in and out, upstream time, edge refusals, header capture', async (t) => {
  const a = await startUpstream('ua', handler)
  const b = await startUpstream('ub', handler)
  const file = newFile()
  const proxy = await startProxy(`
logging:
  access_log:
    enabled: true
    format: json
    path: "${file}"
    headers: { request: [x-global] }
pools:
  pa: { members: [{ name: a1, url: "${a.url}" }] }
  pb: { members: [{ name: b1, url: "${b.url}" }] }
routes:
  - { name: plain, match: { path_prefix: /plain }, pool: pa }
  - { name: cached, match: { path_prefix: /c/ }, pool: pa, cache: { enabled: true } }
  - name: split
    match: { path_prefix: /s }
    split: { name: exp, variants: [{ name: left, pool: pa, weight: 1 }, { name: right, pool: pb, weight: 1 }] }
  - { name: quiet, match: { path_prefix: /quiet }, pool: pa, access_log: false }
  - name: cap
    match: { path_prefix: /cap }
    pool: pb
    access_log: { headers: { request: [x-trace, authorization, cookie, proxy-authorization], response: [set-cookie, x-upstream] } }
`)
  t.teardown(async () => { await proxy.close(); await a.close(); await b.close() })

  const body = Buffer.alloc(1234, 'x')
  const big = Buffer.alloc(200 * 1024, 'y') // beyond the retry buffer: streamed to the member
  const steps: [string, () => Promise<unknown>][] = [
    ['plain GET', () => fetchText(`${proxy.url}/plain?q=1`, { headers: { 'x-request-id': 'req-1', 'x-global': 'g' } })],
    ['POST body', () => fetchText(`${proxy.url}/plain/post`, { method: 'POST', body })],
    ['POST streamed body', () => fetchText(`${proxy.url}/plain/big`, { method: 'POST', body: big })],
    ['cache miss', () => fetchText(`${proxy.url}/c/x`)],
    ['cache hit', () => fetchText(`${proxy.url}/c/x`)],
    ['split', () => fetchText(`${proxy.url}/s`, { headers: { 'x-switchyard-variant': 'right' } })],
    ['quiet route', () => fetchText(`${proxy.url}/quiet`)],
    ['no route', () => fetchText(`${proxy.url}/nowhere`)],
    ['capture', () => fetchText(`${proxy.url}/cap`, { headers: { 'x-trace': 'abc', authorization: 'Bearer s3cret', cookie: 'sid=1', 'x-global': 'g2' } })]
  ]
  for (const [, step] of steps) await step()
  const recs = await records(file, steps.length - 1)
  t.equal(recs.length, steps.length - 1, 'one line per request, none for the route with access_log: false')
  t.notOk(recs.some((r) => r.route === 'quiet'))

  const [get, post, stream, miss, hit, split, refused, cap] = recs
  t.match(get, {
    time: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
    client: '127.0.0.1',
    user: null,
    method: 'GET',
    target: '/plain?q=1',
    protocol: 'HTTP/1.1',
    status: 200,
    bytes_in: 0,
    bytes_out: Buffer.byteLength('ua GET /plain?q=1'),
    route: 'plain',
    pool: 'pa',
    member: 'a1',
    variant: null,
    cache: null,
    request_id: 'req-1',
    firewall: null,
    anonymous: false,
    upgrade: null,
    request_headers: { 'x-global': 'g' }
  })
  t.notOk('reqId' in get, 'the request id once, as request_id')
  t.type(get.upstream_ms, 'number')
  t.ok((get.upstream_ms as number) >= 0 && (get.upstream_ms as number) <= (get.duration_ms as number), 'upstream time within the total')
  t.match(post, { method: 'POST', bytes_in: 1234, status: 200 })
  t.equal(a.received.find((r) => r.url === '/plain/post')?.bodyBytes, 1234, 'the member got what the log says was read')
  t.match(stream, { method: 'POST', bytes_in: big.length })
  t.match(miss, { route: 'cached', cache: 'MISS', member: 'a1', status: 200 })
  t.type(miss.upstream_ms, 'number')
  t.match(hit, { route: 'cached', cache: 'HIT', member: null, upstream_ms: null, bytes_out: Buffer.byteLength('ua GET /c/x') })
  t.equal(a.received.filter((r) => r.url === '/c/x').length, 1, 'the hit did not reach the member')
  t.match(split, { route: 'split', variant: 'right', pool: 'pb', member: 'b1' })
  t.match(refused, { status: 404, route: null, pool: null, member: null, target: '/nowhere', upstream_ms: null })
  t.type(refused.request_id, 'string')
  t.ok((refused.bytes_out as number) > 0, 'the refusal\'s body counted')
  t.same(cap.request_headers, { 'x-global': 'g2', 'x-trace': 'abc', authorization: '[redacted]', cookie: '[redacted]' }, 'global and route lists merged; credentials redacted; absent headers left out')
  t.same(cap.response_headers, { 'set-cookie': '[redacted]', 'x-upstream': 'ub' })
  t.notMatch(readFileSync(file, 'utf8'), /s3cret|sid=1|session=secret/, 'no credential anywhere in the file')
})

t.test('redact: the list adds to the credential fields, which are always redacted', async (t) => {
  const up = await startUpstream('u', handler)
  const file = newFile()
  const proxy = await startProxy(`
logging: { access_log: { enabled: true, path: "${file}", redact: [x-api-key], headers: { request: [x-api-key, cookie] } } }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  await fetchText(`${proxy.url}/`, { headers: { 'x-api-key': 'k', cookie: 'c=1' } })
  const [rec] = await records(file, 1)
  t.same(rec.request_headers, { 'x-api-key': '[redacted]', cookie: '[redacted]' })
})

t.test('a WebSocket: one line when the tunnel closes, status 101, bytes both ways', async (t) => {
  const up = await startWsUpstream('w')
  const file = newFile()
  const proxy = await startProxy(`
logging: { access_log: { enabled: true, path: "${file}" } }
pools: { p: { members: [{ name: w1, url: "${up.url}" }] } }
routes: [{ name: ws, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const { ws } = await openWs(`${proxy.url}/chat?room=2`, { headers: { 'x-request-id': 'ws-1' } })
  t.teardown(() => ws.terminate())
  const back = await roundTrip(ws, 'hello there')
  t.equal(back.data.toString(), 'hello there')
  t.equal(read(file).length, 0, 'nothing logged while the tunnel is open')
  ws.close()
  await closed(ws)
  const [rec] = await records(file, 1)
  t.match(rec, { status: 101, upgrade: 'websocket', method: 'GET', target: '/chat?room=2', route: 'ws', pool: 'p', member: 'w1', request_id: 'ws-1' })
  // A masked 11-byte frame up (6 + 11) plus the close frame; the same unmasked down (2 + 11).
  t.ok((rec.bytes_in as number) >= 17, `client -> member bytes: ${String(rec.bytes_in)}`)
  t.ok((rec.bytes_out as number) >= 13, `member -> client bytes: ${String(rec.bytes_out)}`)
})

t.test('HTTP/2: protocol, bytes in, and bytes out as sent (compressed)', async (t) => {
  const text = 'switchyard '.repeat(500)
  const up = await startUpstream('u', (req, res) => {
    req.resume()
    req.on('end', () => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(text) })
  })
  const file = newFile()
  const proxy = await startProxy(`
listen: { host: 127.0.0.1, port: 0, h2c: true }
logging: { access_log: { enabled: true, path: "${file}" } }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: p, compress: true }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const plain = await h2Request(proxy.url, '/h2', { method: 'POST', body: 'x'.repeat(300) })
  t.equal(plain.body, text)
  const gz = await h2Request(proxy.url, '/h2gz', { headers: { 'accept-encoding': 'gzip' } })
  t.equal(gz.headers['content-encoding'], 'gzip')
  const [a, b] = await records(file, 2)
  t.match(a, { protocol: 'HTTP/2.0', method: 'POST', target: '/h2', bytes_in: 300, bytes_out: text.length, status: 200 })
  t.match(b, { protocol: 'HTTP/2.0', target: '/h2gz', status: 200 })
  t.ok((b.bytes_out as number) > 0 && (b.bytes_out as number) < text.length / 4, `the compressed body's size, not the member's: ${String(b.bytes_out)}`)
})

t.test('closing the app writes every queued line first', async (t) => {
  const up = await startUpstream('u', handler)
  const file = newFile()
  const proxy = await startProxy(`
logging: { access_log: { enabled: true, format: combined, path: "${file}" } }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(() => up.close())
  const n = 300
  await Promise.all(Array.from({ length: n }, (_, i) => fetchText(`${proxy.url}/n/${i}`)))
  const t0 = performance.now()
  await proxy.close()
  t.comment(`close took ${Math.round(performance.now() - t0)} ms`)
  // Read at once, no polling: close() resolved only after the sink wrote its buffer.
  t.equal(read(file).length, n, 'every line is in the file when close() resolves')
})

t.test('answers written outside the pipeline are logged too: CONNECT refused with 405', async (t) => {
  const up = await startUpstream('u', handler)
  const file = newFile()
  const proxy = await startProxy(`
logging: { access_log: { enabled: true, format: combined, path: "${file}" } }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const answer = await rawExchange(proxy.url, 'CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\nUser-Agent: tunnel/1\r\n\r\n')
  t.equal(statusOf(answer), 405)
  const [line] = await lines(file, 1)
  t.match(line, /^127\.0\.0\.1 - - \[[^\]]+\] "CONNECT example\.test:443 HTTP\/1\.1" 405 \d+ "-" "tunnel\/1"$/)
  t.equal(up.hits, 0)
})

t.test('off: no file, nothing written', async (t) => {
  const up = await startUpstream('u', handler)
  const file = newFile()
  const proxy = await startProxy(`
logging: { access_log: { enabled: false, path: "${file}" } }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  t.equal((await fetchOnce(`${proxy.url}/`)).status, 200)
  t.notOk(existsSync(file))
})
