import t from 'tap'
import { createHash } from 'node:crypto'
import { Redis } from 'ioredis'
import { pino, type Logger } from 'pino'
import { cacheKey, hostDigest, type CacheUrl } from '../../src/cache/cache-key.js'
import { RedisCacheStore } from '../../src/cache/redis-store.js'
import { reconnectDelay, redisOptionsFromUrl } from '../../src/cache/redis-connection.js'
import type { StoreOp } from '../../src/cache/store.js'
import { createCacheStore } from '../../src/cache/store-registry.js'
import { waitFor } from '../fixtures/proxy.js'
import { startRedis, startSentinel } from '../fixtures/redis.js'
import { storeContract } from './store-contract.js'

const TIMEOUT_MS = 100
const HOUR = 3600_000
const redis = await startRedis()
t.teardown(() => redis.close())

interface Recorder {
  logger: Logger
  lines: { level: number; msg: string; suppressed?: number }[]
  errors: StoreOp[]
  trips: StoreOp[]
}

function recorder(): Recorder {
  const r: Recorder = { lines: [], errors: [], trips: [], logger: pino({ level: 'silent' }) }
  r.logger = pino({ level: 'info' }, { write: (s: string) => { r.lines.push(JSON.parse(s) as Recorder['lines'][number]) } })
  return r
}

let tenants = 0
async function makeStore(opts: { keyPrefix?: string; rec?: Recorder; url?: string; timeoutMs?: number } = {}): Promise<RedisCacheStore> {
  const rec = opts.rec
  const store = new RedisCacheStore({
    url: opts.url ?? redis.url,
    keyPrefix: opts.keyPrefix ?? `t${++tenants}:`,
    timeoutMs: opts.timeoutMs ?? TIMEOUT_MS,
    logger: rec?.logger ?? pino({ level: 'silent' }),
    hooks: rec === undefined ? undefined : { onError: (op) => { rec.errors.push(op) }, observe: (op) => { rec.trips.push(op) } },
    maxReconnectDelayMs: 200
  })
  if (!(await store.ready(5000))) throw new Error('redis store did not connect')
  return store
}

/** A plain client for looking at Redis from the side. */
async function client(t: { teardown(fn: () => unknown): void }): Promise<Redis> {
  const c = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  await c.connect()
  t.teardown(() => c.disconnect())
  return c
}

const url = (path: string, query = '', host = 'example.com'): CacheUrl => ({ scheme: 'http', host, path, query })
const body = (s: string) => Buffer.from(s)

// Redis expires keys by itself, so the contract's elapse is a no-op and its waitFor polls.
storeContract(t, { make: (prefix) => makeStore({ keyPrefix: prefix }), elapse: async () => {} })

t.test('redis: only namespaced digest keys, each with a Redis TTL', async (t) => {
  const store = await makeStore({ keyPrefix: 'ttl:' })
  t.teardown(() => store.close())
  const c = await client(t)
  await store.set(cacheKey(url('/a')), 'accept', { accept: 'x' }, { meta: 'm', body: body('a') }, 60_000)
  await store.set(cacheKey(url('/b', 'q')), undefined, {}, { meta: 'm', body: body('b') }, 30_000)
  const keys = await c.keys('ttl:*')
  t.equal(keys.length, 6, 'two variants, two URL indexes, one authority index, one host-name index')
  for (const k of keys) {
    t.match(k, /^ttl:(?:[uha]:\{[0-9a-f]{64}\}|v:\{[0-9a-f]{64}\}:[0-9a-f]{64})$/, `${k} is prefix + kind + hash-tagged digest`)
    const pttl = await c.pttl(k)
    t.ok(pttl > 0 && pttl <= 60_000, `${k} expires by itself (${pttl} ms)`)
  }
  t.equal(await c.type(`ttl:v:{${'0'.repeat(64)}}:${'0'.repeat(64)}`), 'none')
})

t.test('redis: the host index drops expired URLs on the next write', async (t) => {
  const store = await makeStore({ keyPrefix: 'gc:' })
  t.teardown(() => store.close())
  const c = await client(t)
  const hkey = `gc:h:{${hostDigest('example.com')}}`
  await store.set(cacheKey(url('/old')), undefined, {}, { meta: 'm', body: body('old') }, 30)
  await waitFor(async () => (await c.exists(`gc:u:{${cacheKey(url('/old')).digest}}`)) === 0, 3000, 'the old URL to expire')
  await store.set(cacheKey(url('/new')), undefined, {}, { meta: 'm', body: body('new') }, 60_000)
  t.same(await c.zrange(hkey, 0, -1), [`/new ${cacheKey(url('/new')).digest}`])
})

t.test('redis: purges never touch keys outside the namespace', async (t) => {
  const store = await makeStore({ keyPrefix: 'sw:' })
  const nested = await makeStore({ keyPrefix: 'sw:b:' })
  t.teardown(async () => { await store.close(); await nested.close() })
  const c = await client(t)
  const k = cacheKey(url('/x'))
  // Another tenant's keys, some shaped exactly like ours under another prefix.
  const foreign: Record<string, string> = {
    [`other:u:{${k.digest}}`]: 'u',
    [`swu:${k.digest}`]: 'no colon',
    [`sw${k.digest}`]: 'bare',
    'session:1': 'x',
    [`sw:h:{${hostDigest('example.com')}}x`]: 'longer than ours'
  }
  for (const [name, value] of Object.entries(foreign)) await c.set(name, value)
  for (const s of [store, nested]) {
    await s.set(k, undefined, {}, { meta: 'm', body: body('x') }, HOUR)
    await s.set(cacheKey(url('/y')), undefined, {}, { meta: 'm', body: body('y') }, HOUR)
  }
  t.equal(await store.purgeUrl(k), 1)
  t.equal(await store.purgePrefix('example.com', '/'), 1)
  t.same((await c.keys('sw:*')).filter((name) => /^sw:(?:u:\{[0-9a-f]{64}\}|v:\{[0-9a-f]{64}\}:[0-9a-f]{64})$/.test(name)), [], 'our entries and URL indexes are all gone (the host and tag indexes are trimmed by expiry)')
  for (const [name, value] of Object.entries(foreign)) t.equal(await c.get(name), value, `${name} survives`)
  t.equal((await nested.get(k, {}))?.body.toString(), 'x', 'the nested-prefix tenant keeps its entries')
  t.equal((await nested.get(cacheKey(url('/y')), {}))?.body.toString(), 'y')
})

t.test('redis: one instance reads what another wrote; a hit is one round trip once warm', async (t) => {
  const a = await makeStore({ keyPrefix: 'shared:' })
  const rec = recorder()
  const b = await makeStore({ keyPrefix: 'shared:', rec })
  t.teardown(async () => { await a.close(); await b.close() })
  const plain = cacheKey(url('/plain'))
  const varied = cacheKey(url('/varied'))
  // The HTTP layer keys every response on Origin (Vary: Origin added): the names guessed first.
  await a.set(plain, 'origin', {}, { meta: 'p', body: body('plain') }, HOUR)
  await a.set(varied, 'accept-encoding', { 'accept-encoding': 'gzip' }, { meta: 'g', body: body('gzip') }, HOUR)

  t.equal((await b.get(plain, {}))?.body.toString(), 'plain')
  t.equal(rec.trips.length, 1, 'no Vary of the origin\'s own: one round trip')
  rec.trips.length = 0
  t.equal((await b.get(varied, { 'accept-encoding': 'gzip' }))?.body.toString(), 'gzip')
  t.equal(rec.trips.length, 3, 'first lookup of a varying URL in this process: the guess, the names, the variant')
  rec.trips.length = 0
  t.equal((await b.get(varied, { 'accept-encoding': 'gzip' }))?.body.toString(), 'gzip')
  t.equal(rec.trips.length, 1, 'then a hit is one round trip')
  t.equal(await b.get(varied, { 'accept-encoding': 'br' }), undefined)
  t.equal(rec.trips.length, 3, 'and a miss two (the variant, then the names: the miss goes upstream anyway)')
  t.same(rec.errors, [])
  await b.purgeUrl(varied)
  t.equal(await a.get(varied, { 'accept-encoding': 'gzip' }), undefined, 'a purge through one instance is seen by the other')
})

t.test('redis: stopped -> fails fast and quietly; restarted -> caching resumes', async (t) => {
  const rec = recorder()
  const store = await makeStore({ keyPrefix: 'outage:', rec })
  t.teardown(() => store.close())
  const key = cacheKey(url('/o'))
  t.equal(await store.set(key, undefined, {}, { meta: 'm', body: body('before') }, HOUR), true)

  await redis.stop()
  for (let i = 0; i < 20; i++) {
    const started = performance.now()
    t.equal(await store.get(key, {}), undefined, 'get resolves undefined')
    const elapsed = performance.now() - started
    if (elapsed >= 2 * TIMEOUT_MS) t.fail(`get took ${elapsed.toFixed(0)} ms`)
  }
  t.equal(await store.set(key, undefined, {}, { meta: 'm', body: body('during') }, HOUR), false, 'set resolves false, no throw')
  await store.delete(key)
  await t.rejects(store.purgeUrl(key), 'an admin purge reports the failure')
  t.ok(rec.errors.filter((op) => op === 'get').length >= 20, 'every failed get is counted')
  t.ok(rec.errors.includes('set') && rec.errors.includes('delete') && rec.errors.includes('purge'))
  const warnings = rec.lines.filter((l) => l.level === 40)
  t.equal(warnings.length, 1, `one log line for ${rec.errors.length} failures (no flooding)`)

  await redis.start()
  await waitFor(async () => (await store.set(key, undefined, {}, { meta: 'm', body: body('after') }, HOUR)) &&
    (await store.get(key, {}))?.body.toString() === 'after', 10_000, 'caching to resume')
  t.pass('caching resumed on the restarted server without a new store')
  t.ok(rec.lines.some((l) => l.msg.includes('redis is back')), 'recovery is logged')
})

t.test('redis: paused (SIGSTOP) -> get gives up within the timeout, then recovers', async (t) => {
  const rec = recorder()
  const store = await makeStore({ keyPrefix: 'pause:', rec })
  t.teardown(async () => { redis.resume(); await store.close() })
  const key = cacheKey(url('/p'))
  await store.set(key, undefined, {}, { meta: 'm', body: body('p') }, HOUR)

  redis.pause()
  const started = performance.now()
  t.equal(await store.get(key, {}), undefined)
  const elapsed = performance.now() - started
  t.ok(elapsed >= TIMEOUT_MS * 0.9 && elapsed < TIMEOUT_MS * 2, `gave up after ${elapsed.toFixed(0)} ms`)
  t.equal(await store.set(key, undefined, {}, { meta: 'm', body: body('q') }, HOUR), false)
  // After socketTimeout the hung connection is dropped, and calls fail at once instead of
  // each waiting for the command timeout.
  await waitFor(async () => {
    const s = performance.now()
    await store.get(key, {})
    return performance.now() - s < 10
  }, 5000, 'gets to fail fast')
  t.pass('fails fast while Redis hangs')

  redis.resume()
  await waitFor(async () => (await store.get(key, {})) !== undefined, 10_000, 'reads to resume')
  t.ok(rec.errors.length > 0, 'the timeouts were counted')
})

t.test('redis: through Sentinel', async (t) => {
  const sentinel = await startSentinel(redis)
  t.teardown(() => sentinel.close())
  const store = await makeStore({ url: sentinel.url, keyPrefix: 'sentinel:' })
  t.teardown(() => store.close())
  const key = cacheKey(url('/s'))
  t.equal(await store.set(key, undefined, {}, { meta: 'm', body: body('via sentinel') }, HOUR), true)
  const direct = await makeStore({ keyPrefix: 'sentinel:' })
  t.teardown(() => direct.close())
  t.equal((await direct.get(key, {}))?.body.toString(), 'via sentinel', 'the same master as a direct connection')
})

t.test('redis: URL forms', async (t) => {
  t.same(redisOptionsFromUrl('redis://127.0.0.1:6379/2'), {}, 'ioredis parses redis:// itself')
  t.same(redisOptionsFromUrl('rediss://u:p@cache.example:6380'), {})
  t.same(redisOptionsFromUrl('redis+sentinel://s1:26379,[::1]:26380,s3/mymaster'), {
    sentinels: [{ host: 's1', port: 26379 }, { host: '::1', port: 26380 }, { host: 's3', port: 26379 }],
    name: 'mymaster'
  })
  t.same(redisOptionsFromUrl('redis+sentinel://app:p%40ss@s1:1/m/3?sentinel_password=sp'), {
    sentinels: [{ host: 's1', port: 1 }], name: 'm', db: 3, username: 'app', password: 'p@ss', sentinelPassword: 'sp'
  })
  t.same(redisOptionsFromUrl('redis+sentinel://:pw@s1/m'), { sentinels: [{ host: 's1', port: 26379 }], name: 'm', password: 'pw' })
  t.throws(() => redisOptionsFromUrl('redis+cluster://a:1,b:2'), /unsupported URL scheme/)
  const err = (() => { try { redisOptionsFromUrl('http://user:secret@x') } catch (e) { return e as Error } })()
  t.ok(err !== undefined && /unsupported URL scheme/.test(err.message) && !err.message.includes('secret'), 'rejected, credentials not echoed')
  for (let attempt = 1; attempt < 40; attempt++) {
    const d = reconnectDelay(attempt, 2000)
    if (d < 0 || d > 2000) t.fail(`delay ${d} out of bounds`)
  }
  t.pass('reconnect delays stay within the cap')
})

t.test('registry: auto is redis when REDIS_URL is set', async (t) => {
  const store = createCacheStore(
    { store: 'auto', max_bytes: 1000, key_prefix: 'registry:', redis: { timeout_ms: TIMEOUT_MS }, near_cache: { enabled: false, max_bytes: 0 }, coalesce: { enabled: false, lock_ttl_ms: 1000, max_wait_ms: 0 } },
    { logger: pino({ level: 'silent' }), env: { REDIS_URL: redis.url } })
  t.teardown(() => store.close())
  t.ok(store instanceof RedisCacheStore)
  await (store as RedisCacheStore).ready(5000)
  const key = cacheKey(url('/r'))
  t.equal(await store.set(key, undefined, {}, { meta: 'm', body: body('r') }, HOUR), true)
  t.equal((await store.get(key, {}))?.body.toString(), 'r')
})

/** Reads until the near cache holds the entry. */
async function warm(s: RedisCacheStore, k: ReturnType<typeof cacheKey>): Promise<void> {
  await waitFor(async () => { await s.get(k, {}); return (s.stats().near?.entries ?? 0) >= 1 }, 3000, 'a near-cache copy')
}

t.test('redis near cache: hits without a round trip; a write or purge through another instance evicts the copy', async (t) => {
  const make = async (rec: Recorder): Promise<RedisCacheStore> => {
    const s = new RedisCacheStore({ url: redis.url, keyPrefix: 'near:', timeoutMs: TIMEOUT_MS, logger: pino({ level: 'silent' }), maxReconnectDelayMs: 200, nearCache: { maxBytes: 1 << 20 },
      hooks: { observe: (op) => { rec.trips.push(op) }, onError: (op) => { rec.errors.push(op) } } })
    t.ok(await s.ready(5000))
    t.ok(await s.nearReady(5000), 'tracking established')
    return s
  }
  const ra = recorder()
  const rb = recorder()
  const a = await make(ra)
  const b = await make(rb)
  t.teardown(async () => { await a.close(); await b.close() })
  const k = cacheKey(url('/near'))
  await a.set(k, 'origin', {}, { meta: 'm1', body: body('one') }, HOUR)
  t.equal((await b.get(k, {}))?.body.toString(), 'one')
  // The write's own invalidation may overtake b's first read and forbid that copy: read until kept.
  await warm(b, k)
  rb.trips.length = 0
  for (let i = 0; i < 5; i++) t.equal((await b.get(k, {}))?.body.toString(), 'one')
  t.same(rb.trips, [], 'five hits, no Redis round trip')
  t.same(b.stats().near?.entries, 1)

  // A write through another instance: b's copy must go within 100 ms on loopback.
  let started = performance.now()
  await a.set(k, 'origin', {}, { meta: 'm2', body: body('two') }, HOUR)
  await waitFor(async () => (await b.get(k, {}))?.body.toString() === 'two', 2000, 'b to see the new body')
  const writeMs = performance.now() - started
  t.comment(`write -> other instance sees it: ${writeMs.toFixed(1)} ms`)
  t.ok(writeMs < 1000)

  // A soft purge through another instance marks b's copy stale too.
  started = performance.now()
  await a.purgeUrl(k, { soft: true, now: 5 })
  await waitFor(async () => (await b.get(k, {}))?.invalidatedAt === 5, 2000, 'b to see the soft purge')
  t.comment(`soft purge -> other instance sees it: ${(performance.now() - started).toFixed(1)} ms`)

  // A hard purge.
  started = performance.now()
  await a.purgeUrl(k)
  await waitFor(async () => (await b.get(k, {})) === undefined, 2000, 'b to see the purge')
  t.comment(`purge -> other instance sees it: ${(performance.now() - started).toFixed(1)} ms`)
  t.same(rb.errors, [])
})

t.test('redis near cache: lost tracking (Redis restart) empties it, and it serves again after', async (t) => {
  const own = await startRedis()
  t.teardown(() => own.close())
  const rec = recorder()
  const s = new RedisCacheStore({ url: own.url, keyPrefix: 'n2:', timeoutMs: TIMEOUT_MS, logger: rec.logger, maxReconnectDelayMs: 100, nearCache: { maxBytes: 1 << 20 },
    hooks: { observe: (op) => { rec.trips.push(op) } } })
  t.teardown(() => s.close())
  t.ok(await s.nearReady(5000))
  const k = cacheKey(url('/restart'))
  await s.set(k, 'origin', {}, { meta: 'm', body: body('before') }, HOUR)
  t.equal((await s.get(k, {}))?.body.toString(), 'before')
  await warm(s, k)
  await own.stop()
  await waitFor(() => s.stats().near?.entries === 0, 3000, 'the near cache to be flushed')
  t.equal(await s.get(k, {}), undefined, 'Redis is gone (no persistence): so is the copy')
  await own.start()
  await waitFor(async () => (await s.ready(50)) && (await s.nearReady(50)), 5000, 'the store and its tracking to come back')
  await s.set(k, 'origin', {}, { meta: 'm', body: body('after') }, HOUR)
  t.equal((await s.get(k, {}))?.body.toString(), 'after')
  await warm(s, k)
  rec.trips.length = 0
  t.equal((await s.get(k, {}))?.body.toString(), 'after')
  t.same(rec.trips, [], 'served from the near cache again')
})

t.test('redis: a purge racing a write of the same URL or tag never unindexes the stored entry', async (t) => {
  const store = await makeStore({ keyPrefix: 'race:' })
  t.teardown(() => store.close())
  for (let i = 0; i < 10; i++) {
    const k = cacheKey(url(`/r/${i}`, '', 'race.test'))
    await store.set(k, 'origin', {}, { meta: 'm', body: body('old'), tags: ['T'] }, HOUR)
    await Promise.all([store.purgeTags(['T']), store.purgeUrl(k), store.set(k, 'origin', {}, { meta: 'm', body: body('new'), tags: ['T'] }, HOUR)])
    if ((await store.get(k, {})) === undefined) continue
    // Whatever order they ran in, a stored entry is still found by its tag and its prefix.
    t.equal(await store.purgeTags(['T']), 1, `round ${i}: the tag still finds it`)
    await store.set(k, 'origin', {}, { meta: 'm', body: body('again'), tags: ['T'] }, HOUR)
    t.equal(await store.purgePrefix('race.test', '/r/'), 1, `round ${i}: the prefix still finds it`)
  }
})

t.test('redis: a URL with thousands of variants is still purged (no Lua unpack limit)', async (t) => {
  // Walking 9000 fields in one script takes longer than the 100 ms the other tests allow when
  // the machine is loaded (CI runs test files in parallel); this test is about the unpack limit.
  const store = await makeStore({ keyPrefix: 'many:', timeoutMs: 5000 })
  t.teardown(() => store.close())
  const c = await client(t)
  const k = cacheKey(url('/many'))
  await store.set(k, 'user-agent, origin', { 'user-agent': 'real' }, { meta: 'm', body: body('x') }, HOUR)
  // 9000 more variant fields in the URL's index, as 9000 user agents would leave.
  const fields: string[] = []
  for (let i = 0; i < 9000; i++) fields.push('=' + createHash('sha256').update(String(i)).digest('hex'), String(Date.now() + HOUR))
  await c.hset(`many:u:{${k.digest}}`, ...fields)
  t.equal(await store.purgeUrl(k), 1, 'the one real variant is found')
  t.equal(await store.get(k, { 'user-agent': 'real' }), undefined)
})

t.test('redis near cache: a copy ends with the entry\'s TTL even before Redis reports the expiry', async (t) => {
  const s = new RedisCacheStore({ url: redis.url, keyPrefix: 'nttl:', timeoutMs: TIMEOUT_MS, logger: pino({ level: 'silent' }), maxReconnectDelayMs: 200, nearCache: { maxBytes: 1 << 20 } })
  t.teardown(() => s.close())
  t.ok(await s.nearReady(5000))
  const k = cacheKey(url('/short-lived'))
  await s.set(k, 'origin', {}, { meta: 'm', body: body('x') }, 300)
  await warm(s, k)
  await waitFor(async () => (await s.get(k, {})) === undefined, 3000, 'the copy to end with the TTL')
  t.pass('gone once its TTL passed')
})
