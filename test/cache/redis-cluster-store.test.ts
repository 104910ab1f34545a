/**
 * The Redis store on a real 3-master Redis Cluster: the whole store contract, entries spread
 * over every master, and the near cache's invalidation from every master.
 */
import t from 'tap'
import { pino } from 'pino'
import { cacheKey, type CacheUrl } from '../../src/cache/cache-key.js'
import { RedisCacheStore } from '../../src/cache/redis-store.js'
import { waitFor } from '../fixtures/proxy.js'
import { startRedisCluster } from '../fixtures/redis-cluster.js'
import { storeContract } from './store-contract.js'

const cluster = await startRedisCluster()
t.teardown(() => cluster.close())
const HOUR = 3600_000

let tenants = 0
async function makeStore(keyPrefix = `c${++tenants}:`, near = false): Promise<RedisCacheStore> {
  const store = new RedisCacheStore({
    url: cluster.url, keyPrefix, timeoutMs: 500, logger: pino({ level: 'silent' }), maxReconnectDelayMs: 200,
    nearCache: near ? { maxBytes: 1 << 20 } : undefined
  })
  if (!(await store.ready(10_000))) throw new Error('cluster store did not connect')
  return store
}

storeContract(t, { make: (prefix) => makeStore(prefix), elapse: async () => {} })

const url = (path: string, host = 'example.com'): CacheUrl => ({ scheme: 'http', host, path, query: '' })

t.test('cluster: entries of many URLs land on every master; prefix and tag purges reach them all', async (t) => {
  const store = await makeStore('spread:')
  t.teardown(() => store.close())
  for (let i = 0; i < 60; i++) {
    t.ok(await store.set(cacheKey(url(`/s/${i}`)), 'origin', {}, { meta: 'm', body: Buffer.from(String(i)), tags: [i % 2 === 0 ? 'even' : 'odd'] }, HOUR))
  }
  const sizes = await Promise.all(store.masters().map((m) => m.dbsize()))
  t.equal(sizes.length, 3)
  t.ok(sizes.every((n) => n > 0), `every master holds some keys (${sizes.join(', ')})`)
  t.equal(await store.purgeTags(['even']), 30, 'a tag purge across slots')
  t.equal(await store.get(cacheKey(url('/s/0')), {}), undefined)
  t.equal((await store.get(cacheKey(url('/s/1')), {}))?.body.toString(), '1')
  t.equal(await store.purgePrefix('example.com', '/s/'), 30, 'a prefix purge across slots')
  t.equal(await store.get(cacheKey(url('/s/1')), {}), undefined)
})

t.test('cluster: the near cache is invalidated from every master', async (t) => {
  const a = await makeStore('near:', true)
  const b = await makeStore('near:', true)
  t.teardown(async () => { await a.close(); await b.close() })
  t.ok(await b.nearReady(10_000), 'tracking on every master')
  const keys = Array.from({ length: 12 }, (_, i) => cacheKey(url(`/n/${i}`)))
  for (const k of keys) await a.set(k, 'origin', {}, { meta: 'm', body: Buffer.from('one') }, HOUR)
  await waitFor(async () => {
    for (const k of keys) await b.get(k, {})
    return b.stats().near?.entries === keys.length
  }, 5000, 'b to copy every entry')
  const started = performance.now()
  for (const k of keys) await a.set(k, 'origin', {}, { meta: 'm', body: Buffer.from('two') }, HOUR)
  await waitFor(async () => {
    for (const k of keys) if ((await b.get(k, {}))?.body.toString() !== 'two') return false
    return true
  }, 5000, 'b to see every new body')
  t.comment(`12 writes spread over 3 masters -> all seen by the other instance in ${(performance.now() - started).toFixed(1)} ms`)
  t.ok(true, 'every copy was replaced')
})
