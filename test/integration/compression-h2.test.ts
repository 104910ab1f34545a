/**
 * Compression over HTTP/2 (h2c with prior knowledge): the client writer's compressor runs on
 * Node's HTTP/2 compatibility response exactly as on HTTP/1.1, forwarded and from the cache.
 */
import t from 'tap'
import zlib from 'node:zlib'
import type { ClientHttp2Session, IncomingHttpHeaders } from 'node:http2'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy } from '../fixtures/proxy.js'
import { h2Connect } from '../fixtures/h2.js'

function text(n: number): Buffer {
  let s = ''
  for (let i = 0; s.length < n; i++) s += `line ${i % 97} of the answer, compressed over HTTP/2\n`
  return Buffer.from(s.slice(0, n))
}

const up = await startUpstream('origin', (req, res) => {
  const n = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('n') ?? 20000)
  const body = text(n)
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length), 'cache-control': 'public, max-age=600', etag: '"h2"' })
  res.end(body)
})
const proxy = await startProxy(`
listen: { host: 127.0.0.1, port: 0, h2c: true }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: cached, match: { path_prefix: /c/ }, pool: p, cache: { enabled: true }, compress: true }
  - { name: all, match: { path_prefix: / }, pool: p, compress: true }
cache: { store: memory }
`)
const session = await h2Connect(proxy.url)
t.teardown(async () => { session.close(); await proxy.close(); await up.close() })

interface Got { status: number; headers: IncomingHttpHeaders; body: Buffer }

function h2Get(s: ClientHttp2Session, path: string, headers: Record<string, string> = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = s.request({ ':method': 'GET', ':path': path, ...headers })
    let head: IncomingHttpHeaders = {}
    const chunks: Buffer[] = []
    req.on('response', (h) => { head = h })
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks) }))
    req.on('error', reject)
  })
}

function decode(got: Got): Buffer {
  const ce = got.headers['content-encoding']
  return ce === 'gzip' ? zlib.gunzipSync(got.body) : ce === 'br' ? zlib.brotliDecompressSync(got.body) : got.body
}

t.test('forwarded answers are compressed on HTTP/2', async (t) => {
  for (const [coding, n] of [['gzip', 20000], ['br', 3 * 1024 * 1024]] as const) {
    const r = await h2Get(session, `/f?n=${n}`, { 'accept-encoding': coding })
    t.equal(r.status, 200)
    t.equal(r.headers['content-encoding'], coding)
    t.equal(r.headers['content-length'], undefined)
    t.equal(r.headers.vary, 'Accept-Encoding')
    t.equal(r.headers.etag, 'W/"h2"')
    t.ok(decode(r).equals(text(n)), `${coding}: ${n} bytes decoded intact`)
  }
  const plain = await h2Get(session, '/f')
  t.equal(plain.headers['content-encoding'], undefined)
  t.equal(plain.headers['content-length'], '20000')
})

t.test('cache hits are served from the compressed copy on HTTP/2', async (t) => {
  const miss = await h2Get(session, '/c/doc', { 'accept-encoding': 'gzip' })
  t.equal(miss.headers['x-cache'], 'MISS')
  t.ok(decode(miss).equals(text(20000)))
  const hit = await h2Get(session, '/c/doc', { 'accept-encoding': 'gzip' })
  t.equal(hit.headers['x-cache'], 'HIT')
  t.equal(hit.headers['content-encoding'], 'gzip')
  t.ok(decode(hit).equals(text(20000)))
  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  t.match(metrics, /switchyard_compression_responses_total\{route="cached",encoding="gzip"\} 2/)
  t.match(metrics, /switchyard_requests_total\{route="cached",pool="p",method="GET",code="200"\} 2/, 'counted like HTTP/1.1 answers')
})
