/**
 * Smoke test of the Redis Cluster fixture (test/fixtures/redis-cluster.ts) through the client
 * the cache really uses: createRedisClient with a redis+cluster:// URL gives an ioredis Cluster
 * that reaches all three masters, runs same-slot Lua, refuses cross-slot commands, and finds a
 * restarted node again.
 */
import t from 'tap'
import { Cluster } from 'ioredis'
import { createRedisClient, type RedisClient } from '../../src/cache/redis-connection.js'
import { startRedisCluster } from '../fixtures/redis-cluster.js'

const began = performance.now()
const cluster = await startRedisCluster()
t.comment(`3-master cluster up in ${Math.round(performance.now() - began)} ms: ${cluster.url}`)

const client: RedisClient = createRedisClient(cluster.url, { timeoutMs: 500, maxReconnectDelayMs: 500, connectionName: 't' })
// Connection errors while a node is stopped arrive as 'error' / 'node error' events; without a
// listener an 'error' event would crash the test process.
client.on('error', () => {})
t.teardown(async () => {
  client.disconnect()
  await cluster.close()
})

/** Polls `check` every 10 ms until it holds; fails with `what` after `timeoutMs`. */
async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

await until(() => client.status === 'ready', 5000, () => `the cluster client to be ready (status ${client.status})`)

const KEYS = Array.from({ length: 50 }, (_, i) => `key:${i}`)

t.test('the URL is a cluster URL and the client is an ioredis Cluster', async (t) => {
  t.equal(cluster.ports.length, 3)
  t.equal(cluster.url, `redis+cluster://${cluster.ports.map((p) => `127.0.0.1:${p}`).join(',')}`)
  t.ok(client instanceof Cluster)
})

t.test('SET/GET of 50 keys lands on all three masters', async (t) => {
  await cluster.flushall()
  await Promise.all(KEYS.map((k) => client.set(k, `v-${k}`)))
  t.same(await Promise.all(KEYS.map((k) => client.get(k))), KEYS.map((k) => `v-${k}`))

  if (!(client instanceof Cluster)) throw new Error('not a cluster client')
  const masters = client.nodes('master')
  t.same(masters.map((m) => m.options.port).sort(), [...cluster.ports].sort(), 'the client knows every master')
  const sizes = await Promise.all(masters.map((m) => m.dbsize()))
  t.ok(sizes.every((n) => n > 0), `every master holds some keys (${sizes.join(', ')})`)
  t.equal(sizes.reduce((a, b) => a + b, 0), KEYS.length, 'each key is stored exactly once')

  await cluster.flushall()
  t.same(await Promise.all(masters.map((m) => m.dbsize())), [0, 0, 0], 'flushall empties every master')
})

t.test('Lua with hash-tagged keys in one slot runs', async (t) => {
  t.equal(await client.cluster('KEYSLOT', '{a}x'), await client.cluster('KEYSLOT', '{a}y'))
  const script = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[2]); " +
    "return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}"
  t.same(await client.eval(script, 2, '{a}x', '{a}y', 'one', 'two'), ['one', 'two'])
  t.same(await client.mget('{a}x', '{a}y'), ['one', 'two'], 'a same-slot multi-key command works too')
})

t.test('a multi-key command across slots fails with CROSSSLOT', async (t) => {
  t.not(await client.cluster('KEYSLOT', '{a}x'), await client.cluster('KEYSLOT', '{b}x'))
  await t.rejects(client.mget('{a}x', '{b}x'), /CROSSSLOT/)
  await t.rejects(client.eval("return redis.call('MGET', KEYS[1], KEYS[2])", 2, '{a}x', '{b}x'), /CROSSSLOT/)
})

t.test('a stopped and restarted node rejoins on the same port', async (t) => {
  await cluster.stop(1)
  await cluster.start(1) // resolves once every node says cluster_state:ok again
  // The client dropped its connection to the node; it reconnects on the next command for its slots.
  let last = ''
  await until(async () => {
    const results = await Promise.allSettled(KEYS.map((k) => client.set(k, 'again')))
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    last = failed.length === 0 ? '' : `${failed.length} failed, e.g. ${String(failed[0].reason)}`
    return failed.length === 0
  }, 10000, () => `every SET to succeed after the restart (${last})`)
  t.same(await Promise.all(KEYS.map((k) => client.get(k))), KEYS.map(() => 'again'))
})
