/**
 * The CacheStore contract, run against every store (DESIGN.md habit 5; the shape follows
 * undici's cache store test utils). Not a *.test.ts file: memory-store.test.ts and
 * redis-store.test.ts each run it with a harness for their store.
 */
import type tap from 'tap'
import { cacheKey, variantDigest, type CacheUrl, type RequestHeaders } from '../../src/cache/cache-key.js'
import type { CacheEntry, CacheStore } from '../../src/cache/store.js'
import { waitFor } from '../fixtures/proxy.js'

export interface StoreHarness {
  /**
   * A store over an empty backend. Stores made with different prefixes share one backend
   * where the kind of store allows it (one Redis), as separate tenants would.
   */
  make(keyPrefix?: string): Promise<CacheStore>
  /** Lets `ms` pass for TTLs: the memory store advances its injected clock, Redis just waits. */
  elapse(ms: number): Promise<void>
}

const url = (path: string, query = '', host = 'example.com', scheme = 'http'): CacheUrl => ({ scheme, host, path, query })
const entry = (meta: string, body: Buffer | string): CacheEntry => ({ meta, body: Buffer.isBuffer(body) ? body : Buffer.from(body) })
const HOUR = 3600_000
const NONE: RequestHeaders = {}

export function storeContract(t: typeof tap, harness: StoreHarness): void {
  t.test('contract: round trip with a binary body', async (t) => {
    const store = await harness.make()
    t.teardown(() => store.close())
    // Every byte value, plus sequences that are not valid UTF-8: a text round trip would mangle them.
    const body = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from([0xc3, 0x28, 0xff, 0xfe, 0x00])])
    const meta = JSON.stringify({ status: 200, headers: { 'content-type': 'application/octet-stream' }, note: 'héllo ✓' })
    const key = cacheKey(url('/bin'))
    t.equal(await store.get(key, NONE), undefined, 'miss before set')
    t.equal(await store.set(key, undefined, NONE, entry(meta, body), HOUR), true)
    const got = await store.get(key, NONE)
    t.ok(got !== undefined && got.body.equals(body), 'body bytes identical')
    t.equal(got?.meta, meta)
    t.ok(Buffer.isBuffer(got?.body))
    t.equal(await store.set(key, undefined, NONE, entry('m2', ''), HOUR), true, 'an empty body is storable')
    t.same((await store.get(key, NONE))?.body, Buffer.alloc(0), 'overwrite replaces')
    t.equal(await store.set(cacheKey(url('/zero')), undefined, NONE, entry('m', 'x'), 0), false, 'ttl 0 is not stored')
    t.equal(await store.get(cacheKey(url('/zero')), NONE), undefined)
  })

  t.test('contract: entries expire at their TTL', async (t) => {
    const store = await harness.make()
    t.teardown(() => store.close())
    const short = cacheKey(url('/short'))
    const long = cacheKey(url('/long'))
    await store.set(short, undefined, NONE, entry('m', 'short'), 60)
    await store.set(long, undefined, NONE, entry('m', 'long'), HOUR)
    t.ok(await store.get(short, NONE), 'fresh before its TTL')
    await harness.elapse(70)
    await waitFor(async () => (await store.get(short, NONE)) === undefined, 3000, 'the short entry to expire')
    t.equal((await store.get(long, NONE))?.body.toString(), 'long', 'a longer TTL survives')
  })

  t.test('contract: Vary variants under one URL', async (t) => {
    const store = await harness.make()
    t.teardown(() => store.close())
    const key = cacheKey(url('/page'))
    const vary = 'Accept-Encoding, Accept-Language'
    await store.set(key, vary, { 'accept-encoding': 'gzip', 'accept-language': 'en' }, entry('g', 'gzip-en'), HOUR)
    await store.set(key, vary, { 'accept-encoding': 'br', 'accept-language': 'en' }, entry('b', 'br-en'), HOUR)
    await store.set(key, vary, { 'accept-language': 'en' }, entry('i', 'identity-en'), HOUR)
    const body = async (h: RequestHeaders) => (await store.get(key, h))?.body.toString()
    t.equal(await body({ 'accept-encoding': 'gzip', 'accept-language': 'en' }), 'gzip-en')
    t.equal(await body({ 'accept-encoding': 'br', 'accept-language': 'en', 'user-agent': 'x' }), 'br-en', 'unlisted headers do not matter')
    t.equal(await body({ 'accept-language': 'en' }), 'identity-en', 'an absent field selects the variant stored without it')
    t.equal(await body({ 'accept-encoding': '', 'accept-language': 'en' }), undefined, 'empty is not absent')
    t.equal(await body({ 'accept-encoding': 'deflate', 'accept-language': 'en' }), undefined, 'another value misses')
    t.equal(await body({ 'accept-encoding': '  gzip ', 'accept-language': ['en'] }), 'gzip-en', 'surrounding whitespace and a one-line array normalise away')

    // Names are case-insensitive and unordered; repeated field lines combine with ", ".
    const k2 = cacheKey(url('/lines'))
    await store.set(k2, ['accept-language', 'ACCEPT-encoding'], { 'accept-encoding': ['gzip', 'br'], 'accept-language': 'de' }, entry('m', 'two-lines'), HOUR)
    t.equal((await store.get(k2, { 'accept-encoding': 'gzip, br', 'accept-language': 'de' }))?.body.toString(), 'two-lines')

    t.equal(await store.set(cacheKey(url('/star')), 'accept, *', NONE, entry('m', 'x'), HOUR), false, 'Vary: * is never stored (RFC 9111 section 4.1)')
    t.equal(await store.get(cacheKey(url('/star')), NONE), undefined)
    t.equal(await store.set(cacheKey(url('/bad')), 'bad name', NONE, entry('m', 'x'), HOUR), false, 'a malformed Vary is not stored')
  })

  t.test('contract: a response with different Vary names replaces the old variants', async (t) => {
    const store = await harness.make()
    t.teardown(() => store.close())
    const key = cacheKey(url('/changes'))
    await store.set(key, 'accept-encoding', { 'accept-encoding': 'gzip' }, entry('m', 'old-gzip'), HOUR)
    await store.set(key, 'accept-encoding', { 'accept-encoding': 'br' }, entry('m', 'old-br'), HOUR)
    await store.set(key, 'accept-language', { 'accept-encoding': 'gzip', 'accept-language': 'fr' }, entry('m', 'new-fr'), HOUR)
    t.equal((await store.get(key, { 'accept-encoding': 'gzip', 'accept-language': 'fr' }))?.body.toString(), 'new-fr')
    t.equal(await store.get(key, { 'accept-encoding': 'br' }), undefined, 'old variants are gone')
    t.equal(await store.purgeUrl(key), 1, 'only the new variant remains')
  })

  t.test('contract: purge one URL removes all its variants and nothing else', async (t) => {
    const store = await harness.make()
    t.teardown(() => store.close())
    const key = cacheKey(url('/a', 'q=1'))
    const sibling = cacheKey(url('/a', 'q=2'))
    const other = cacheKey(url('/a', 'q=1', 'other.example'))
    await store.set(key, 'accept-encoding', { 'accept-encoding': 'gzip' }, entry('m', '1'), HOUR)
    await store.set(key, 'accept-encoding', { 'accept-encoding': 'br' }, entry('m', '2'), HOUR)
    await store.set(sibling, undefined, NONE, entry('m', 'sibling'), HOUR)
    await store.set(other, undefined, NONE, entry('m', 'other'), HOUR)
    t.equal(await store.purgeUrl(key), 2, 'both variants counted')
    t.equal(await store.get(key, { 'accept-encoding': 'gzip' }), undefined)
    t.equal(await store.get(key, { 'accept-encoding': 'br' }), undefined)
    t.equal((await store.get(sibling, NONE))?.body.toString(), 'sibling')
    t.equal((await store.get(other, NONE))?.body.toString(), 'other')
    t.equal(await store.purgeUrl(key), 0, 'purging again finds nothing')
    await store.delete(sibling)
    t.equal(await store.get(sibling, NONE), undefined, 'delete drops the URL too')
    t.equal(await store.set(key, undefined, NONE, entry('m', 'again'), HOUR), true)
    t.equal((await store.get(key, NONE))?.body.toString(), 'again', 'a purged URL can be stored again')
  })

  t.test('contract: purge by prefix stays inside the host, the prefix and the namespace', async (t) => {
    const store = await harness.make('tenant-a:')
    const tenantB = await harness.make('tenant-b:')
    t.teardown(async () => { await store.close(); await tenantB.close() })
    const paths = ['/img/a.png', '/img/b/c.png', '/img2', '/api/img/x', '/']
    for (const s of [store, tenantB]) {
      for (const p of paths) await s.set(cacheKey(url(p)), undefined, NONE, entry('m', p), HOUR)
      await s.set(cacheKey(url('/img/q', 'x=1')), 'accept', { accept: 'a' }, entry('m', 'q-a'), HOUR)
      await s.set(cacheKey(url('/img/q', 'x=1')), 'accept', { accept: 'b' }, entry('m', 'q-b'), HOUR)
      await s.set(cacheKey(url('/img/a.png', '', 'static.example')), undefined, NONE, entry('m', 'other host'), HOUR)
      await s.set(cacheKey(url('/img/a.png', '', 'example.com', 'https')), undefined, NONE, entry('m', 'https'), HOUR)
    }
    t.equal(await store.purgePrefix('EXAMPLE.com', '/img/'), 5, 'two paths, two variants and the https URL')
    const has = async (s: CacheStore, k: CacheUrl, h: RequestHeaders = NONE) => (await s.get(cacheKey(k), h)) !== undefined
    t.notOk(await has(store, url('/img/a.png')))
    t.notOk(await has(store, url('/img/b/c.png')))
    t.notOk(await has(store, url('/img/q', 'x=1'), { accept: 'a' }))
    t.notOk(await has(store, url('/img/a.png', '', 'example.com', 'https')))
    t.ok(await has(store, url('/img2')), '/img2 does not start with /img/')
    t.ok(await has(store, url('/api/img/x')), 'the prefix anchors at the start')
    t.ok(await has(store, url('/img/a.png', '', 'static.example')), 'another host survives')
    for (const p of paths) t.ok(await has(tenantB, url(p)), `the other tenant keeps ${p}`)
    t.ok(await has(tenantB, url('/img/q', 'x=1'), { accept: 'b' }))

    t.equal(await store.purgePrefix('example.com', '/img/'), 0, 'nothing left to purge')
    t.equal(await store.purgePrefix('example.com', '/'), 3, "'/' purges the rest of the host")
    t.ok(await has(store, url('/img/a.png', '', 'static.example')))
    t.equal(await store.purgePrefix('nobody.example', '/'), 0)
  })

  t.test('contract: keys cannot collide by concatenation', async (t) => {
    const store = await harness.make()
    t.teardown(() => store.close())
    // Pairs whose components concatenate to the same text.
    const pairs: [CacheUrl, CacheUrl][] = [
      [url('/a?b'), url('/a', 'b')],
      [url('/x', '', 'example.com:8080'), url(':8080/x', '', 'example.com')],
      [url('/p', '', 'ab.example'), url('b.example/p', '', 'a')],
      [url('/s', '', 'example.com', 'https'), url('/s', '', 'example.com', 'http')],
      [url('/"]', '",'), url('/', ']",')]
    ]
    for (const [a, b] of pairs) {
      t.not(cacheKey(a).digest, cacheKey(b).digest, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`)
      await store.set(cacheKey(a), undefined, NONE, entry('m', 'a'), HOUR)
      t.equal(await store.get(cacheKey(b), NONE), undefined, 'one does not read the other')
    }
    // Selected header values: ("1, 2", absent) vs ("1", "2") vs ("1,", " 2").
    const k = cacheKey(url('/v'))
    const digests = new Set([
      variantDigest(k, 'a,b', { a: '1, 2' }),
      variantDigest(k, 'a,b', { a: '1', b: '2' }),
      variantDigest(k, 'a,b', { a: '1,', b: '2' }),
      variantDigest(k, 'a,b', { a: '', b: '1, 2' }),
      variantDigest(k, 'a', { a: '1, 2' }),
      variantDigest(k, '', {})
    ])
    t.equal(digests.size, 6, 'distinct selected values give distinct variant digests')
    await store.set(k, 'a, b', { a: '1, 2' }, entry('m', 'first'), HOUR)
    t.equal(await store.get(k, { a: '1', b: '2' }), undefined)
    t.equal((await store.get(k, { a: '1, 2' }))?.body.toString(), 'first')
    t.equal(cacheKey(url('/d', '', 'Example.COM:80')).digest, cacheKey(url('/d')).digest, 'host case and the default port normalise')
    t.not(cacheKey(url('/d', '', 'example.com:443')).digest, cacheKey(url('/d')).digest, ':443 is not default for http')
  })

  t.test('contract: purge by tag drops every URL with a response carrying it, and nothing else', async (t) => {
    const store = await harness.make()
    t.teardown(() => store.close())
    const tagged = (meta: string, tags: string[]): CacheEntry => ({ meta, body: Buffer.from(meta), tags })
    const a = cacheKey(url('/a'))
    const b = cacheKey(url('/b', '', 'other.example'))
    const c = cacheKey(url('/c'))
    await store.set(a, 'accept', { accept: '1' }, tagged('a1', ['product-1', 'all']), HOUR)
    await store.set(a, 'accept', { accept: '2' }, tagged('a2', ['product-1']), HOUR)
    await store.set(b, undefined, NONE, tagged('b', ['product-2', 'all']), HOUR)
    await store.set(c, undefined, NONE, tagged('c', ['Product-1']), HOUR)
    t.equal(await store.purgeTags(['product-1']), 2, 'both variants of /a, on any host')
    t.equal(await store.get(a, { accept: '1' }), undefined)
    t.equal((await store.get(b, NONE))?.meta, 'b', 'another tag survives')
    t.equal((await store.get(c, NONE))?.meta, 'c', 'tags are case-sensitive (Surrogate-Key values are opaque)')
    t.equal(await store.purgeTags(['product-1']), 0, 'purging again finds nothing')
    t.equal(await store.purgeTags(['all', 'Product-1', 'nobody']), 2, 'several tags at once')
    t.equal(await store.get(b, NONE), undefined)
    t.equal(await store.get(c, NONE), undefined)
    t.equal(await store.set(a, undefined, NONE, tagged('again', ['product-1']), HOUR), true)
    t.equal(await store.purgeTags(['product-1']), 1, 'a re-stored URL is found by its tag again')
  })

  t.test('contract: a soft purge marks entries stale and keeps them', async (t) => {
    const store = await harness.make()
    t.teardown(() => store.close())
    const a = cacheKey(url('/soft/a'))
    const b = cacheKey(url('/soft/b'))
    const other = cacheKey(url('/keep'))
    await store.set(a, undefined, NONE, { meta: 'a', body: Buffer.from('a'), tags: ['t'] }, HOUR)
    await store.set(b, undefined, NONE, { meta: 'b', body: Buffer.from('b') }, HOUR)
    await store.set(other, undefined, NONE, { meta: 'o', body: Buffer.from('o') }, HOUR)
    t.equal((await store.get(a, NONE))?.invalidatedAt, undefined, 'not marked before a purge')
    t.equal(await store.purgeUrl(a, { soft: true, now: 1_000 }), 1)
    const got = await store.get(a, NONE)
    t.equal(got?.body.toString(), 'a', 'the entry is still there')
    t.equal(got?.invalidatedAt, 1_000, 'marked with the purge time')
    t.equal(await store.purgePrefix('example.com', '/soft/', { soft: true, now: 2_000 }), 2)
    t.equal((await store.get(b, NONE))?.invalidatedAt, 2_000)
    t.equal((await store.get(other, NONE))?.invalidatedAt, undefined, 'outside the prefix: untouched')
    t.equal(await store.purgeTags(['t'], { soft: true, now: 3_000 }), 1)
    t.equal((await store.get(a, NONE))?.invalidatedAt, 3_000)
    t.equal(await store.set(a, undefined, NONE, { meta: 'a2', body: Buffer.from('a2'), tags: ['t'] }, HOUR), true)
    t.equal((await store.get(a, NONE))?.invalidatedAt, undefined, 'a fresh response replaces the mark')
    t.equal(await store.purgeTags(['t']), 1, 'a hard purge after a soft one still finds it')
    t.equal(await store.get(a, NONE), undefined)
  })

  t.test('contract: a host without a port reaches every port; with one, only that port', async (t) => {
    const store = await harness.make()
    t.teardown(() => store.close())
    const plain = cacheKey(url('/p'))
    const p8080 = cacheKey(url('/p', '', 'example.com:8080'))
    const p9090 = cacheKey(url('/p', '', 'EXAMPLE.com:9090'))
    const v6 = cacheKey(url('/p', '', '[::1]:8080'))
    for (const k of [plain, p8080, p9090, v6]) await store.set(k, undefined, NONE, entry('m', k.host), HOUR)
    t.same((await store.authorities('example.com')).sort(), ['example.com', 'example.com:8080', 'example.com:9090'])
    t.ok((await store.authorities('[::1]')).includes('[::1]:8080'), 'an IPv6 literal with a port')
    t.equal(await store.purgePrefix('example.com:8080', '/'), 1, 'one port')
    t.equal((await store.get(p9090, NONE))?.body.toString(), 'example.com:9090')
    t.equal(await store.purgePrefix('example.com', '/'), 2, 'every port of the name')
    t.equal(await store.get(plain, NONE), undefined)
    t.equal((await store.get(v6, NONE))?.body.toString(), '[::1]:8080', 'another host survives')
  })
}
