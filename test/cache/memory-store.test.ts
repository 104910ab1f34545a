import t from 'tap'
import { pino } from 'pino'
import { cacheKey } from '../../src/cache/cache-key.js'
import { MemoryCacheStore } from '../../src/cache/memory-store.js'
import { createCacheStore, resolveStoreName } from '../../src/cache/store-registry.js'
import type { CacheConfig } from '../../src/config/schema.js'
import { storeContract } from './store-contract.js'

// One injected clock for every store of this file: TTLs pass without sleeping (DESIGN.md habit 10).
let clock = 1_000_000
const now = (): number => clock

storeContract(t, {
  make: async () => new MemoryCacheStore({ maxBytes: 64 * 1024 * 1024, now }),
  elapse: async (ms) => { clock += ms }
})

const key = (path: string) => cacheKey({ scheme: 'http', host: 'example.com', path, query: '' })
const body = (n: number, fill = 120) => Buffer.alloc(n, fill)
// An entry's size: the 64-character variant digest + meta bytes + body bytes.
const sizeOf = (meta: string, bodyBytes: number) => 64 + Buffer.byteLength(meta) + bodyBytes

t.test('memory: LRU eviction by bytes, the least recently used first', async (t) => {
  const store = new MemoryCacheStore({ maxBytes: 3 * sizeOf('m', 1000), now })
  await store.set(key('/1'), undefined, {}, { meta: 'm', body: body(1000) }, 60_000)
  await store.set(key('/2'), undefined, {}, { meta: 'm', body: body(1000) }, 60_000)
  await store.set(key('/3'), undefined, {}, { meta: 'm', body: body(1000) }, 60_000)
  t.same(store.stats(), { entries: 3, bytes: 3 * sizeOf('m', 1000) }, 'exactly full')
  t.ok(await store.get(key('/1'), {}), 'touch /1: /2 is now the least recently used')
  await store.set(key('/4'), undefined, {}, { meta: 'm', body: body(1000) }, 60_000)
  t.equal(await store.get(key('/2'), {}), undefined, '/2 evicted')
  for (const p of ['/1', '/3', '/4']) t.ok(await store.get(key(p), {}), `${p} kept`)
  t.same(store.stats(), { entries: 3, bytes: 3 * sizeOf('m', 1000) })

  // A big entry evicts as many as it needs.
  await store.set(key('/big'), undefined, {}, { meta: 'm', body: body(2000) }, 60_000)
  t.same(store.stats(), { entries: 2, bytes: sizeOf('m', 2000) + sizeOf('m', 1000) })
  t.equal(await store.get(key('/3'), {}), undefined, 'the two least recently used went')
  t.ok(await store.get(key('/4'), {}))

  t.equal(await store.set(key('/huge'), undefined, {}, { meta: 'm', body: body(4000) }, 60_000), false, 'an entry above max_bytes is refused')
  t.equal(store.stats().entries, 2, 'and evicts nothing')

  // Multi-byte meta is counted in bytes, not UTF-16 units.
  const s2 = new MemoryCacheStore({ maxBytes: 1000, now })
  await s2.set(key('/u'), undefined, {}, { meta: 'ééé', body: body(10) }, 60_000)
  t.equal(s2.stats().bytes, 64 + 6 + 10)
})

t.test('memory: replacing and purging keep the byte count exact', async (t) => {
  const store = new MemoryCacheStore({ maxBytes: 1 << 20, now })
  await store.set(key('/r'), 'accept', { accept: 'a' }, { meta: 'm', body: body(100) }, 60_000)
  await store.set(key('/r'), 'accept', { accept: 'a' }, { meta: 'm', body: body(50) }, 60_000)
  await store.set(key('/r'), 'accept', { accept: 'b' }, { meta: 'm', body: body(10) }, 60_000)
  t.same(store.stats(), { entries: 2, bytes: sizeOf('m', 50) + sizeOf('m', 10) })
  t.equal(await store.purgeUrl(key('/r')), 2)
  t.same(store.stats(), { entries: 0, bytes: 0 })
  await store.set(key('/e'), undefined, {}, { meta: 'm', body: body(10) }, 100)
  clock += 200
  t.equal(await store.purgeUrl(key('/e')), 0, 'an expired entry is not counted as purged')
  t.same(store.stats(), { entries: 0, bytes: 0 }, 'but its bytes are released')
  await store.set(key('/c'), undefined, {}, { meta: 'm', body: body(10) }, 60_000)
  await store.close()
  t.same(store.stats(), { entries: 0, bytes: 0 }, 'close empties the store')
})

t.test('registry: auto is memory without a Redis URL', async (t) => {
  const config: CacheConfig = { store: 'auto', max_bytes: 1000, key_prefix: 'p:', redis: { timeout_ms: 100 }, near_cache: { enabled: false, max_bytes: 0 }, coalesce: { enabled: false, lock_ttl_ms: 1000, max_wait_ms: 0 } }
  const deps = { logger: pino({ level: 'silent' }), env: {} }
  t.equal(resolveStoreName(config, deps), 'memory')
  t.equal(resolveStoreName(config, { ...deps, env: { REDIS_URL: 'redis://127.0.0.1:1' } }), 'redis', 'REDIS_URL selects redis')
  t.equal(resolveStoreName({ ...config, redis: { url: 'redis://127.0.0.1:1', timeout_ms: 100 } }, deps), 'redis')
  t.equal(resolveStoreName({ ...config, store: 'memory', redis: { url: 'redis://127.0.0.1:1', timeout_ms: 100 } }, deps), 'memory', 'an explicit store wins')
  const store = createCacheStore(config, deps)
  t.teardown(() => store.close())
  t.ok(store instanceof MemoryCacheStore)
  t.throws(() => createCacheStore({ ...config, store: 'redis' }, deps), /neither cache.redis.url nor REDIS_URL/)
})
