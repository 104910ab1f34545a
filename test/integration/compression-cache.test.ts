/**
 * Compression with the cache, on the memory store and on a real Redis: the stored response stays
 * the identity body, each coding is compressed once and kept beside it (a hit never compresses
 * again: the compressor byte counter stands still), answers from the cache get the same Vary,
 * ETag and 304 treatment, and every purge drops the compressed copies with the response.
 */
import t from 'tap'
import zlib from 'node:zlib'
import { Redis } from 'ioredis'
import { Agent, request } from 'undici'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, waitFor, type TestProxy } from '../fixtures/proxy.js'
import { startRedis } from '../fixtures/redis.js'

const redis = await startRedis()
t.teardown(() => redis.close())
const agent = new Agent({ keepAliveTimeout: 1000, headersTimeout: 15000, bodyTimeout: 15000 })
t.teardown(() => agent.close())

/** The body of version `v`: prose-like text that compresses well. */
function doc(v: number): Buffer {
  const words = ['cache', 'entry', 'variant', 'stored', 'copy', 'purge', 'the', 'of']
  let s = `version ${v}\n`
  for (let i = 0; s.length < 30000; i++) s += words[(i * 7 + v) % words.length] + (i % 11 === 0 ? '\n' : ' ')
  return Buffer.from(s)
}

let version = 1
const up = await startUpstream('origin', (req, res) => {
  const body = doc(version)
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': String(body.length), 'cache-control': 'public, max-age=600', etag: `"d${version}"`, 'surrogate-key': 'docs' })
  res.end(req.method === 'HEAD' ? undefined : body)
})
t.teardown(() => up.close())

interface Got { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

async function get(proxy: TestProxy, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Got> {
  const res = await request(`${proxy.url}${path}`, { method: method as 'GET', headers, dispatcher: agent })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

function decode(got: Got): Buffer {
  const ce = got.headers['content-encoding']
  return ce === 'gzip' ? zlib.gunzipSync(got.body) : ce === 'br' ? zlib.brotliDecompressSync(got.body) : got.body
}

async function metric(proxy: TestProxy, name: string, labels = ''): Promise<number> {
  const text = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  const line = text.split('\n').find((l) => l.startsWith(labels === '' ? `${name} ` : `${name}{${labels}}`))
  return line === undefined ? 0 : Number(line.split(' ').pop())
}

async function purge(proxy: TestProxy, body: unknown): Promise<number> {
  const r = await fetchText(`${proxy.adminUrl}/admin/cache/purge`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return r.status
}

const stores: [string, string][] = [
  ['memory', '{ store: memory }'],
  ['redis', `{ store: redis, redis: { url: "${redis.url}" } }`]
]

for (const [name, store] of stores) {
  t.test(`${name}: compressed once per coding, served from the copy, purged with the entry`, async (t) => {
    await redis.flushall()
    version = 1
    const client = new Redis(redis.url)
    const proxy = await startProxy(`
pools: { p: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: docs, match: { path_prefix: / }, pool: p, cache: { enabled: true }, compress: { encodings: [br, gzip] } }
cache: ${store}
`)
    t.teardown(async () => { await proxy.close(); client.disconnect() })
    /** Stored responses, compressed copies included. */
    const stored = async (): Promise<number> => name === 'memory'
      ? metric(proxy, 'switchyard_cache_entries')
      : (await client.keys('switchyard:v:*')).length
    const bytesIn = (): Promise<number> => metric(proxy, 'switchyard_compression_bytes_total', 'route="docs",direction="in"')
    const responses = (coding: string): Promise<number> => metric(proxy, 'switchyard_compression_responses_total', `route="docs",encoding="${coding}"`)
    const hits = up.hits

    // A miss from a gzip client: compressed as it streams, and that output kept as the gzip copy.
    const miss = await get(proxy, '/doc', { 'accept-encoding': 'gzip' })
    t.equal(miss.headers['x-cache'], 'MISS')
    t.equal(miss.headers['content-encoding'], 'gzip')
    t.ok(decode(miss).equals(doc(1)))
    await waitFor(async () => await stored() === 2, 5000, 'the response and its gzip copy stored')
    const afterFill = await bytesIn()
    t.equal(afterFill, doc(1).length, 'the fill compressed the body once')

    const gzipBefore = await responses('gzip')
    for (let i = 0; i < 5; i++) {
      const hit = await get(proxy, '/doc', { 'accept-encoding': 'gzip, deflate' })
      t.equal(hit.headers['x-cache'], 'HIT')
      t.equal(hit.headers['content-encoding'], 'gzip')
      t.equal(hit.headers.vary, 'Accept-Encoding')
      t.equal(hit.headers.etag, 'W/"d1"')
      t.equal(Number(hit.headers['content-length']), hit.body.length, 'a stored copy has a known length')
      t.ok(decode(hit).equals(doc(1)))
    }
    t.equal(await bytesIn(), afterFill, 'gzip hits compress nothing')
    t.equal(await responses('gzip') - gzipBefore, 5, 'and are counted as compressed answers')

    // br: compressed at the first hit, never again.
    const br1 = await get(proxy, '/doc', { 'accept-encoding': 'br' })
    t.equal(br1.headers['x-cache'], 'HIT')
    t.equal(br1.headers['content-encoding'], 'br')
    t.ok(decode(br1).equals(doc(1)))
    t.equal(await bytesIn(), afterFill + doc(1).length, 'the first br hit made the br copy')
    await waitFor(async () => await stored() === 3, 5000, 'the br copy stored')
    const br2 = await get(proxy, '/doc', { 'accept-encoding': 'br' })
    t.ok(br2.body.equals(br1.body), 'the same bytes, from the copy')
    t.equal(await bytesIn(), afterFill + doc(1).length, 'the second br hit compressed nothing')

    const identity = await get(proxy, '/doc')
    t.equal(identity.headers['x-cache'], 'HIT')
    t.equal(identity.headers['content-encoding'], undefined)
    t.equal(identity.headers.vary, 'Accept-Encoding', 'Vary on the identity hit too')
    t.equal(identity.headers.etag, '"d1"')
    t.ok(identity.body.equals(doc(1)))

    const head = await get(proxy, '/doc', { 'accept-encoding': 'gzip' }, 'HEAD')
    t.equal(head.headers['x-cache'], 'HIT')
    t.equal(head.headers['content-encoding'], 'gzip')
    t.equal(head.headers.etag, 'W/"d1"')
    t.equal(head.body.length, 0)

    // RFC 9111 section 4.3.2 with the weak tag the client holds (weak comparison, RFC 9110 section 13.1.2).
    const nm = await get(proxy, '/doc', { 'accept-encoding': 'gzip', 'if-none-match': 'W/"d1"' })
    t.equal(nm.status, 304)
    t.equal(nm.headers['x-cache'], 'HIT')
    t.equal(nm.headers.etag, 'W/"d1"')
    t.equal(nm.headers.vary, 'Accept-Encoding')
    t.equal((await get(proxy, '/doc', { 'if-none-match': '"d1"' })).status, 304, 'the strong tag still validates the identity answer')
    t.equal(up.hits, hits + 1, 'one origin request in all')

    // A response replaced while fresh (a no-cache fill): its old copies are never served.
    version = 2
    const refill = await get(proxy, '/doc', { 'cache-control': 'no-cache' })
    t.ok(refill.body.equals(doc(2)))
    await waitFor(async () => (await get(proxy, '/doc')).body.equals(doc(2)), 5000, 'version 2 stored')
    const fresh = await get(proxy, '/doc', { 'accept-encoding': 'gzip' })
    t.equal(fresh.headers['x-cache'], 'HIT')
    t.ok(decode(fresh).equals(doc(2)), 'the gzip answer is made from the new response, not the old copy')
    t.equal(fresh.headers.etag, 'W/"d2"')

    // Every kind of purge drops the copies with the response.
    const fill = async (): Promise<void> => {
      await get(proxy, '/doc', { 'accept-encoding': 'gzip' })
      await get(proxy, '/doc', { 'accept-encoding': 'br' })
      await waitFor(async () => await stored() === 3, 5000, 'response, gzip and br copies stored')
    }
    await fill()
    t.equal(await purge(proxy, { url: `http://${new URL(proxy.url).host}/doc` }), 200)
    t.equal(await stored(), 0, 'purge by URL')
    await fill()
    t.equal(await purge(proxy, { host: new URL(proxy.url).host, prefix: '/d' }), 200)
    t.equal(await stored(), 0, 'purge by prefix')
    await fill()
    t.equal(await purge(proxy, { tags: ['docs'] }), 200)
    t.equal(await stored(), 0, 'purge by tag')
    const after = await get(proxy, '/doc', { 'accept-encoding': 'gzip' })
    t.equal(after.headers['x-cache'], 'MISS')
    t.ok(decode(after).equals(doc(2)))
  })
}

t.test('redis: another instance serves the compressed copy from the store, compressing nothing', async (t) => {
  await redis.flushall()
  version = 3
  const yaml = `
pools: { p: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: docs, match: { path_prefix: / }, pool: p, cache: { enabled: true }, compress: true }
cache: { store: redis, redis: { url: "${redis.url}" }, near_cache: { enabled: false } }
`
  const a = await startProxy(yaml)
  const b = await startProxy(yaml)
  const client = new Redis(redis.url)
  t.teardown(async () => { await a.close(); await b.close(); client.disconnect() })
  const miss = await get(a, '/shared', { 'accept-encoding': 'br' })
  t.equal(miss.headers['x-cache'], 'MISS')
  await waitFor(async () => (await client.keys('switchyard:v:*')).length === 2, 5000, 'the response and its br copy in Redis')
  // b shares the store but not a's memory: its Host differs in port, so ask with a's.
  const host = new URL(a.url).host
  const hit = await get(b, '/shared', { 'accept-encoding': 'br', host })
  t.equal(hit.headers['x-cache'], 'HIT')
  t.equal(hit.headers['content-encoding'], 'br')
  t.ok(hit.body.equals(miss.body), 'the very bytes a compressed')
  t.ok(decode(hit).equals(doc(3)))
  t.equal(await metric(b, 'switchyard_compression_bytes_total', 'route="docs",direction="in"'), 0, 'b compressed nothing')
  t.equal(await metric(b, 'switchyard_compression_responses_total', 'route="docs",encoding="br"'), 1, 'and sent one br answer')
})
