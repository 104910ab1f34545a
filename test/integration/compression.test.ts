/**
 * Per-route response compression end to end, real proxy and real upstream: negotiation, the
 * cases that are never compressed, the header changes (Vary, weak ETag, Content-Length), HEAD,
 * 304s, streamed bodies flushed as they come, and backpressure with a client that stops reading.
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import zlib from 'node:zlib'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Agent, request } from 'undici'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, waitFor } from '../fixtures/proxy.js'

const zstdDecompress = (zlib as unknown as { zstdDecompressSync?: (b: Buffer) => Buffer }).zstdDecompressSync
const HAVE_ZSTD = typeof (zlib as unknown as { createZstdCompress?: unknown }).createZstdCompress === 'function'

const WORDS = ['switchyard', 'route', 'pool', 'upstream', 'balancer', 'split', 'cache', 'vary', 'etag', 'gzip', 'brotli', 'the', 'a', 'of', 'and']

/** Deterministic text of `n` bytes that compresses like prose. */
function textBody(n: number, seed = 1): Buffer {
  let x = seed
  let s = ''
  while (s.length < n) {
    x = (x * 1103515245 + 12345) & 0x7fffffff
    s += WORDS[x % WORDS.length] + ((x >> 8) % 7 === 0 ? '.\n' : ' ')
  }
  return Buffer.from(s.slice(0, n))
}

const PRE = zlib.gzipSync(textBody(5000))

/** The stream test's second line waits for this. */
let releaseStream: () => void = () => {}
/** The slow-client test's upstream side. */
const slow = { sent: 0, blockedSince: 0, closed: false }
const SLOW_TOTAL = 256 * 1024 * 1024
const HEX = Buffer.from(randomBytes(32 * 1024).toString('hex'))

function handler(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://x')
  const name = url.pathname.split('/').pop() ?? ''
  const n = Number(url.searchParams.get('n') ?? 20000)
  const body = textBody(n)
  const plain = (headers: Record<string, string>, b: Buffer = body): void => {
    res.writeHead(200, { 'content-length': String(b.length), ...headers })
    res.end(req.method === 'HEAD' ? undefined : b)
  }
  switch (name) {
    case 'text': {
      const inm = req.headers['if-none-match']
      // Weak comparison, as RFC 9110 section 13.1.2 asks of If-None-Match.
      if (inm !== undefined && inm.split(',').some((t) => t.trim().replace(/^W\//, '') === '"v1"')) {
        res.writeHead(304, { etag: '"v1"' }).end()
        return
      }
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '')
      if (range !== null) {
        const part = body.subarray(Number(range[1]), Number(range[2]) + 1)
        res.writeHead(206, { 'content-type': 'text/html', 'content-range': `bytes ${range[1]}-${range[2]}/${body.length}`, 'content-length': String(part.length), etag: '"v1"' })
        res.end(part)
        return
      }
      plain({ 'content-type': 'text/html; charset=utf-8', etag: '"v1"', 'accept-ranges': 'bytes' })
      return
    }
    case 'json': plain({ 'content-type': 'application/json' }); return
    case 'png': plain({ 'content-type': 'image/png' }); return
    case 'encoded': plain({ 'content-type': 'text/html', 'content-encoding': 'gzip' }, PRE); return
    case 'notransform': plain({ 'content-type': 'text/html', 'cache-control': 'public, no-transform' }); return
    case 'vary': plain({ 'content-type': 'text/html', vary: 'Origin' }); return
    case 'varystar': plain({ 'content-type': 'text/html', vary: '*' }); return
    case 'sse': plain({ 'content-type': 'text/event-stream' }); return
    case 'chunked':
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write(body.subarray(0, 5000))
      res.end(body.subarray(5000))
      return
    case 'stream':
      // A streamed answer: the first line, then nothing until the test has read it.
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      res.write('{"line":1}\n')
      releaseStream = () => res.end('{"line":2}\n')
      return
    case 'slow': {
      slow.sent = 0
      slow.blockedSince = 0
      slow.closed = false
      res.on('close', () => { slow.closed = true })
      res.writeHead(200, { 'content-type': 'text/plain' })
      const pump = (): void => {
        while (slow.sent < SLOW_TOTAL) {
          slow.sent += HEX.length
          if (!res.write(HEX)) {
            slow.blockedSince = Date.now()
            res.once('drain', () => { slow.blockedSince = 0; pump() })
            return
          }
        }
        res.end()
      }
      pump()
      return
    }
    default: res.writeHead(404).end()
  }
}

const up = await startUpstream('origin', handler)
const proxy = await startProxy(`
pools:
  p: { members: [{ url: "${up.url}" }] }
routes:
  - { name: plain, match: { path_prefix: /plain/ }, pool: p }
  - { name: gz, match: { path_prefix: /gz/ }, pool: p, compress: { encodings: [gzip, br], types: [text/*, application/x-ndjson], min_bytes: 1000, gzip_level: 1 } }
  - { name: all, match: { path_prefix: / }, pool: p, compress: true }
`)
const agent = new Agent({ keepAliveTimeout: 1000, headersTimeout: 15000, bodyTimeout: 15000 })
t.teardown(async () => { await agent.close(); await proxy.close(); await up.close() })

interface Got { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

/** One request; the body as sent (never decoded). */
async function get(path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Got> {
  const res = await request(`${proxy.url}${path}`, { method: method as 'GET', headers, dispatcher: agent })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

function decode(got: Got): Buffer {
  switch (got.headers['content-encoding']) {
    case 'gzip': return zlib.gunzipSync(got.body)
    case 'br': return zlib.brotliDecompressSync(got.body)
    case 'zstd': return (zstdDecompress as (b: Buffer) => Buffer)(got.body)
    default: return got.body
  }
}

async function metric(name: string, labels: string): Promise<number> {
  const text = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`))
  return line === undefined ? 0 : Number(line.split(' ').pop())
}

t.test('gzip and br: compressed as negotiated, decoded equal, fields rewritten', async (t) => {
  const body = textBody(20000)
  for (const coding of ['gzip', 'br']) {
    const r = await get('/text', { 'accept-encoding': coding })
    t.equal(r.status, 200)
    t.equal(r.headers['content-encoding'], coding, coding)
    t.equal(r.headers['content-length'], undefined, 'no Content-Length: streamed')
    t.equal(r.headers['transfer-encoding'], 'chunked')
    t.equal(r.headers.vary, 'Accept-Encoding')
    t.equal(r.headers.etag, 'W/"v1"', 'the strong ETag is weakened')
    t.equal(r.headers['accept-ranges'], undefined, 'ranges of the encoded form are not offered')
    t.ok(r.body.length < body.length / 2, `${coding}: ${r.body.length} bytes for ${body.length}`)
    t.ok(decode(r).equals(body), `${coding} decodes to the origin's body`)
  }
})

t.test('zstd where this Node has it', { skip: HAVE_ZSTD ? false : 'node:zlib has no zstd on this Node version' }, async (t) => {
  const r = await get('/text', { 'accept-encoding': 'zstd' })
  t.equal(r.headers['content-encoding'], 'zstd')
  t.ok(decode(r).equals(textBody(20000)))
})

t.test('negotiation: route order, q-values, identity and *', async (t) => {
  const ce = async (path: string, ae: string | undefined): Promise<string | undefined> => {
    const r = await get(path, ae === undefined ? {} : { 'accept-encoding': ae })
    t.ok(decode(r).equals(textBody(20000)), `${path} ${ae ?? '(none)'}: the body arrives intact`)
    return r.headers['content-encoding'] as string | undefined
  }
  t.equal(await ce('/text', 'gzip, deflate, br, zstd'), 'br', 'a browser: br first in the default order')
  t.equal(await ce('/gz/text', 'gzip, deflate, br, zstd'), 'gzip', 'the route lists gzip first')
  t.equal(await ce('/text', 'br;q=0.5, gzip'), 'gzip', 'the higher weight wins')
  t.equal(await ce('/text', 'br;q=0, gzip;q=0'), undefined, 'q=0 refuses')
  t.equal(await ce('/text', 'gzip, identity;q=0'), 'gzip')
  t.equal(await ce('/text', 'identity;q=0'), undefined, 'identity refused, nothing else offered: identity anyway')
  t.equal(await ce('/text', '*'), 'br', '*: the route\'s first coding')
  t.equal(await ce('/text', 'br;q=0, *;q=0.5'), HAVE_ZSTD ? 'zstd' : 'gzip', '* does not revive br')
  t.equal(await ce('/text', undefined), undefined, 'no Accept-Encoding: identity')
  t.equal(await ce('/plain/text', 'gzip'), undefined, 'a route without compress')
})

t.test('identity answers of a compressing route say Vary; answers never compressed do not', async (t) => {
  const none = await get('/text', { 'accept-encoding': 'identity' })
  t.equal(none.headers['content-encoding'], undefined)
  t.equal(none.headers['content-length'], '20000')
  t.equal(none.headers.vary, 'Accept-Encoding', 'another client would get it compressed')
  t.equal(none.headers.etag, '"v1"', 'the identity answer keeps the strong ETag')
  t.equal(none.headers['accept-ranges'], 'bytes')

  const small = await get('/text?n=500', { 'accept-encoding': 'gzip' })
  t.equal(small.headers['content-encoding'], undefined, 'below min_bytes')
  t.equal(small.headers['content-length'], '500')
  t.equal(small.headers.vary, undefined)

  const png = await get('/png', { 'accept-encoding': 'gzip' })
  t.equal(png.headers['content-encoding'], undefined, 'not a compressible type')
  t.equal(png.headers.vary, undefined)

  const json = await get('/json', { 'accept-encoding': 'gzip' })
  t.equal(json.headers['content-encoding'], 'gzip', 'JSON is in the default types')

  const encoded = await get('/encoded', { 'accept-encoding': 'br' })
  t.equal(encoded.headers['content-encoding'], 'gzip', 'the origin\'s coding stays')
  t.ok(encoded.body.equals(PRE), 'its bytes untouched')
  t.equal(encoded.headers.vary, undefined)

  const nt = await get('/notransform', { 'accept-encoding': 'gzip' })
  t.equal(nt.headers['content-encoding'], undefined, 'Cache-Control: no-transform')
  t.equal(nt.headers['content-length'], '20000')

  const sse = await get('/sse', { 'accept-encoding': 'gzip' })
  t.equal(sse.headers['content-encoding'], undefined, 'text/event-stream is not compressed by default')
})

t.test('Range answered 206 is sent as it is', async (t) => {
  const r = await get('/text', { 'accept-encoding': 'gzip', range: 'bytes=0-9' })
  t.equal(r.status, 206)
  t.equal(r.headers['content-encoding'], undefined)
  t.equal(r.headers['content-range'], 'bytes 0-9/20000')
  t.ok(r.body.equals(textBody(20000).subarray(0, 10)))
})

t.test('HEAD: the fields a GET gets, no body', async (t) => {
  const get1 = await get('/text', { 'accept-encoding': 'gzip' })
  const head = await get('/text', { 'accept-encoding': 'gzip' }, 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.body.length, 0)
  for (const f of ['content-encoding', 'vary', 'etag', 'content-length', 'content-type']) t.equal(head.headers[f], get1.headers[f], f)
})

t.test('Vary is merged, never next to *', async (t) => {
  t.equal((await get('/vary', { 'accept-encoding': 'gzip' })).headers.vary, 'Origin, Accept-Encoding')
  t.equal((await get('/vary')).headers.vary, 'Origin, Accept-Encoding', 'also uncompressed')
  const star = await get('/varystar', { 'accept-encoding': 'gzip' })
  t.equal(star.headers.vary, '*')
  t.equal(star.headers['content-encoding'], 'gzip')
})

t.test('If-None-Match with the weak ETag: a 304 naming it', async (t) => {
  const first = await get('/text', { 'accept-encoding': 'gzip' })
  const again = await get('/text', { 'accept-encoding': 'gzip', 'if-none-match': String(first.headers.etag) })
  t.equal(again.status, 304)
  t.equal(again.headers.etag, 'W/"v1"', 'the tag the client holds')
  t.match(String(again.headers.vary), /Accept-Encoding/)
  t.equal(again.body.length, 0)
})

t.test('a body of unknown length is compressed, and flushed as it streams', async (t) => {
  const chunked = await get('/chunked', { 'accept-encoding': 'br' })
  t.equal(chunked.headers['content-encoding'], 'br')
  t.ok(decode(chunked).equals(textBody(20000)))

  // The first line must reach the client while the origin still holds the second.
  const res = await request(`${proxy.url}/gz/stream`, { headers: { 'accept-encoding': 'gzip' }, dispatcher: agent })
  t.equal(res.headers['content-encoding'], 'gzip')
  const gunzip = zlib.createGunzip()
  let text = ''
  gunzip.on('data', (d: Buffer) => { text += d.toString() })
  res.body.on('data', (d: Buffer) => gunzip.write(d))
  await waitFor(() => text === '{"line":1}\n', 5000, 'the first line, decoded, before the answer ends')
  const ended = new Promise<void>((resolve) => gunzip.on('end', resolve))
  res.body.on('end', () => gunzip.end())
  releaseStream()
  await ended
  t.equal(text, '{"line":1}\n{"line":2}\n')
})

t.test('a large body streams through the compressor', async (t) => {
  const n = 6 * 1024 * 1024
  const inBefore = await metric('switchyard_compression_bytes_total', 'route="all",direction="in"')
  const outBefore = await metric('switchyard_compression_bytes_total', 'route="all",direction="out"')
  const responsesBefore = await metric('switchyard_compression_responses_total', 'route="all",encoding="br"')
  const r = await get(`/text?n=${n}`, { 'accept-encoding': 'br' })
  t.ok(decode(r).equals(textBody(n)), '6 MiB through brotli')
  t.equal(await metric('switchyard_compression_bytes_total', 'route="all",direction="in"') - inBefore, n, 'bytes in counted')
  t.equal(await metric('switchyard_compression_bytes_total', 'route="all",direction="out"') - outBefore, r.body.length, 'bytes out counted')
  t.equal(await metric('switchyard_compression_responses_total', 'route="all",encoding="br"') - responsesBefore, 1)
})

t.test('a client that stops reading pauses the origin; leaving stops it', async (t) => {
  const port = Number(new URL(proxy.url).port)
  const sock = connect(port, '127.0.0.1')
  t.teardown(() => sock.destroy())
  let head = ''
  sock.once('data', (d: Buffer) => {
    head = d.toString('latin1')
    sock.pause() // reads nothing more: the kernel buffers fill, then the proxy's, then the origin waits
  })
  sock.write('GET /gz/slow HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n')
  await waitFor(() => head !== '', 5000, 'the answer head')
  t.match(head, /content-encoding: gzip/i)
  await waitFor(() => slow.blockedSince > 0 && Date.now() - slow.blockedSince > 500, 30000, 'the origin blocked for 500 ms')
  t.ok(slow.sent < SLOW_TOTAL / 2, `the origin sent ${(slow.sent / 1048576).toFixed(1)} MiB of ${SLOW_TOTAL / 1048576} MiB and waits: nothing holds the body whole`)
  sock.destroy()
  await waitFor(() => slow.closed, 5000, 'the origin exchange stopped once the client left')
  t.pass('the origin\'s answer was aborted')
})
