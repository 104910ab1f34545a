/** The hit path's own Redis client (resp-lrange.ts) against a real redis-server. */
import t from 'tap'
import { Redis } from 'ioredis'
import { RespLrange, plainRedisTarget } from '../../src/cache/resp-lrange.js'
import { waitFor } from '../fixtures/proxy.js'
import { startRedis } from '../fixtures/redis.js'

// An ACL user with a password (the default user stays open for the fixture's PING).
const redis = await startRedis(['--user', 'sy', 'on', '>sekret', '~*', '&*', '+@all'])
t.teardown(() => redis.close())
const url = `redis://sy:sekret@127.0.0.1:${redis.port}/3`

async function side(t: { teardown(fn: () => unknown): void }): Promise<Redis> {
  const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  c.on('error', () => {})
  await c.connect()
  t.teardown(() => c.disconnect())
  return c
}

function client(t: { teardown(fn: () => unknown): void }, timeoutMs = 200): RespLrange {
  const target = plainRedisTarget(url)
  if (target === undefined) throw new Error('plain URL not parsed')
  const c = new RespLrange({ ...target, timeoutMs, maxReconnectDelayMs: 100 })
  t.teardown(() => c.close())
  return c
}

t.test('URL forms: only plain redis:// takes the fast path', async (t) => {
  t.same(plainRedisTarget('redis://u:p%40ss@h.example:6380/2'), { host: 'h.example', port: 6380, username: 'u', password: 'p@ss', db: 2 })
  t.same(plainRedisTarget('redis://127.0.0.1'), { host: '127.0.0.1', port: 6379 })
  t.same(plainRedisTarget('redis://[::1]:7000'), { host: '::1', port: 7000 })
  for (const u of ['rediss://h:1', 'redis+sentinel://h:1/m', 'redis+cluster://h:1', 'redis://h/x', 'redis://h?family=6']) t.equal(plainRedisTarget(u), undefined, u)
})

t.test('LRANGE with AUTH and SELECT: small, empty, missing and large lists, many in flight', async (t) => {
  const c = client(t)
  const s = await side(t)
  await waitFor(() => c.ready, 3000, 'the fast path to connect')
  const big = Buffer.alloc(300_000)
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff
  await s.rpush('big', Buffer.from('head'), big.subarray(0, 8192), big.subarray(8192))
  await s.rpush('small', 'a', '', 'c\r\nd')
  t.same((await c.lrange('small')).map((b) => b.toString()), ['a', '', 'c\r\nd'], 'empty elements and CRLF inside values')
  t.same(await c.lrange('missing'), [], 'no key: an empty list')
  const got = await c.lrange('big')
  t.equal(got.length, 3)
  t.ok(Buffer.concat(got.slice(1)).equals(big), 'a 300 kB reply across many socket reads, byte for byte')
  const keys = Array.from({ length: 200 }, (_, i) => (i % 3 === 0 ? 'big' : i % 3 === 1 ? 'small' : 'missing'))
  const all = await Promise.all(keys.map((k) => c.lrange(k)))
  t.ok(all.every((r, i) => r.length === (keys[i] === 'big' ? 3 : keys[i] === 'small' ? 3 : 0)), '200 commands in flight answered in order')
  t.equal((await s.select(0), await s.exists('big')), 0, 'SELECT 3 was used (db 0 has no such key)')
})

t.test('an error reply rejects that command only', async (t) => {
  const c = client(t)
  const s = await side(t)
  await waitFor(() => c.ready, 3000, 'the fast path to connect')
  await s.set('str', 'x')
  await s.rpush('list', 'ok')
  const [bad, good] = await Promise.allSettled([c.lrange('str'), c.lrange('list')])
  t.equal(bad.status, 'rejected')
  t.match(bad.status === 'rejected' ? String(bad.reason) : '', /WRONGTYPE/)
  t.same(good.status === 'fulfilled' ? good.value.map(String) : [], ['ok'])
})

t.test('Redis stopped: fails at once; back: reconnects by itself. Paused: bounded by the timeout', async (t) => {
  const c = client(t, 150)
  await waitFor(() => c.ready, 3000, 'the fast path to connect')
  await redis.stop()
  await waitFor(() => !c.ready, 3000, 'the loss to be noticed')
  const started = performance.now()
  await t.rejects(c.lrange('x'), /not connected/)
  t.ok(performance.now() - started < 50, 'rejected without waiting')
  await redis.start()
  await waitFor(() => c.ready, 5000, 'the fast path to reconnect (and AUTH again)')
  t.same(await c.lrange('nothing'), [])
  redis.pause()
  const t0 = performance.now()
  await t.rejects(c.lrange('x'), /timed out|closed/)
  const took = performance.now() - t0
  t.ok(took < 1000, `a hung Redis fails the command within about the timeout (${took.toFixed(0)} ms)`)
  redis.resume()
  await waitFor(() => c.ready, 5000, 'the fast path to come back after the pause')
})

t.test('AUTH: a password the server does not need is fine; a wrong one gives up (no reconnect loop)', async (t) => {
  const open = await startRedis()
  t.teardown(() => open.close())
  const extra = new RespLrange({ host: '127.0.0.1', port: open.port, password: 'unneeded', timeoutMs: 200, maxReconnectDelayMs: 50 })
  t.teardown(() => extra.close())
  await waitFor(() => extra.ready, 3000, 'ready despite "no password is set"')
  t.same(await extra.lrange('x'), [])
  const s = await side(t)
  const connections = async (): Promise<number> => Number(/total_connections_received:(\d+)/.exec(await s.info('stats'))?.[1])
  const before = await connections()
  const wrong = new RespLrange({ host: '127.0.0.1', port: redis.port, username: 'sy', password: 'wrong', timeoutMs: 200, maxReconnectDelayMs: 50 })
  t.teardown(() => wrong.close())
  await new Promise((r) => setTimeout(r, 400))
  t.equal(wrong.ready, false, 'never ready')
  t.equal((await connections()) - before, 1, 'one connection, no reconnect loop after a wrong password')
})
