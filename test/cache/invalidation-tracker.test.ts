import t from 'tap'
import { Cluster, Redis } from 'ioredis'
import { pino, type Logger } from 'pino'
import { InvalidationTracker, trackingArgs, type FlushReason } from '../../src/cache/invalidation-tracker.js'
import type { ConnectionPolicy } from '../../src/cache/redis-connection.js'
import { startRedis, startSentinel } from '../fixtures/redis.js'
import { startRedisCluster } from '../fixtures/redis-cluster.js'

const POLICY: ConnectionPolicy = { timeoutMs: 100, maxReconnectDelayMs: 200, connectionName: 'switchyard-tracker-test' }
const PREFIX = 'near:'

type Teardown = { teardown(fn: () => unknown): void }

/** Polls with a deadline (never a fixed sleep). */
async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

interface Recorded {
  invalidations: { keys: string[]; at: number }[]
  flushes: FlushReason[]
  logs: { level: number; msg: string; suppressed?: number }[]
  tracker: InvalidationTracker
  /** Waits for an invalidation naming `key` at index >= `from`; resolves its index and arrival time. */
  invalidated(key: string, from?: number): Promise<{ index: number; at: number }>
}

function track(t: Teardown, url: string, opts: { prefixes?: string[]; checkIntervalMs?: number; invalidate?: (keys: string[]) => void } = {}): Recorded {
  const rec: Omit<Recorded, 'tracker'> & { tracker?: InvalidationTracker } = {
    invalidations: [],
    flushes: [],
    logs: [],
    async invalidated(key, from = 0) {
      const find = (): number => rec.invalidations.findIndex((i, n) => n >= from && i.keys.includes(key))
      await waitFor(() => find() >= 0, 5000, `invalidation of ${key}`)
      const index = find()
      return { index, at: rec.invalidations[index].at }
    }
  }
  const logger: Logger = pino({ level: 'info' }, { write: (s: string) => { rec.logs.push(JSON.parse(s) as Recorded['logs'][number]) } })
  rec.tracker = new InvalidationTracker({ url, prefixes: opts.prefixes ?? [PREFIX], policy: POLICY, logger, checkIntervalMs: opts.checkIntervalMs ?? 200 }, {
    invalidate: (keys) => {
      rec.invalidations.push({ keys, at: performance.now() })
      opts.invalidate?.(keys)
    },
    flush: (reason) => { rec.flushes.push(reason) }
  })
  const tracker = rec.tracker
  t.teardown(() => tracker.close())
  return rec as Recorded
}

/** An ordinary client that writes from the side, like another proxy instance. */
async function writer(t: Teardown, url: string): Promise<Redis> {
  const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  c.on('error', () => {})
  await c.connect()
  t.teardown(() => c.disconnect())
  return c
}

t.test('trackingArgs folds overlapping prefixes, which Redis refuses', async (t) => {
  t.same(trackingArgs(['near:']), ['PREFIX', 'near:'])
  t.same(trackingArgs(['ab', 'a', 'b', 'b']), ['PREFIX', 'a', 'PREFIX', 'b'])
  t.same(trackingArgs(['x', '']), [], "'' tracks every key: BCAST without PREFIX")
  t.throws(() => trackingArgs([]))
})

t.test('writes, deletes and expiries of tracked keys invalidate; others do not', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.close())
  const rec = track(t, redis.url, { prefixes: [PREFIX, 'other:sub:'] })
  t.equal(rec.tracker.active(), false, 'not active before tracking is established')
  t.equal(await rec.tracker.ready(5000), true, 'ready')
  t.equal(rec.tracker.active(), true)
  const w = await writer(t, redis.url)

  const latencies: number[] = []
  const measure = async (key: string, write: () => Promise<unknown>): Promise<void> => {
    const from = rec.invalidations.length
    const started = performance.now()
    await write()
    latencies.push((await rec.invalidated(key, from)).at - started)
  }
  await measure('near:a', () => w.set('near:a', '1'))
  await measure('near:h', () => w.hset('near:h', 'f', 'v'))
  await measure('near:a', () => w.del('near:a'))
  await measure('near:x', () => w.set('near:x', '1', 'PX', 60_000))
  await measure('near:x', () => w.pexpire('near:x', 1))

  // Expiry by Redis itself: the SET invalidates once, the expiry a second time.
  const beforeSet = rec.invalidations.length
  await w.set('near:e', '1', 'PX', 30)
  const written = await rec.invalidated('near:e', beforeSet)
  const expired = await rec.invalidated('near:e', written.index + 1)
  t.comment(`expiry (PX 30) invalidated ${(expired.at - written.at).toFixed(1)} ms after the write (Redis expires actively about every 100 ms)`)

  for (const ms of latencies) t.ok(ms < 1000, `invalidation within a second (${ms.toFixed(1)} ms)`)
  t.comment(`invalidation latency (ms): ${latencies.map((ms) => ms.toFixed(2)).join(', ')}`)

  // Keys outside the prefixes: a later tracked write is delivered after them (one connection,
  // in order), so its arrival proves the untracked ones produced nothing.
  const from = rec.invalidations.length
  await w.set('other:x', '1')
  await w.set('nearly', '1')
  await w.set('near:marker', '1')
  await rec.invalidated('near:marker', from)
  const seen = rec.invalidations.slice(from).flatMap((i) => i.keys)
  t.same(seen, ['near:marker'], 'untracked keys produced nothing')
  await w.set('other:sub:1', '1')
  await rec.invalidated('other:sub:1', from)
  t.same(rec.flushes, [], 'no flush along the way')
})

t.test('FLUSHALL flushes', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.close())
  const rec = track(t, redis.url)
  t.equal(await rec.tracker.ready(5000), true)
  const w = await writer(t, redis.url)
  await w.set('near:a', '1')
  await rec.invalidated('near:a')
  await w.flushall()
  await waitFor(() => rec.flushes.includes('flushall'), 5000, 'flush after FLUSHALL')
  t.equal(rec.tracker.active(), true, 'a FLUSHALL does not end tracking')
})

t.test('a Redis restart flushes, deactivates, and tracking comes back by itself', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.close())
  const rec = track(t, redis.url)
  t.equal(await rec.tracker.ready(5000), true)

  await redis.stop()
  await waitFor(() => rec.flushes.includes('connection-lost'), 5000, 'flush after the server stopped')
  t.equal(rec.tracker.active(), false, 'inactive while Redis is down')
  t.equal(await rec.tracker.ready(300), false, 'ready() times out while Redis is down')
  const flushesWhileDown = rec.flushes.length

  await redis.start()
  const started = Date.now()
  t.equal(await rec.tracker.ready(10_000), true, 'active again after the restart')
  t.comment(`tracking back ${Date.now() - started} ms after the server answered PING`)
  t.equal(rec.flushes.length, flushesWhileDown, 'one flush per loss, not one per failed reconnect')
  const errorLines = rec.logs.filter((l) => l.msg.includes('redis connection error'))
  t.ok(errorLines.length <= 1, `connection errors logged at most once per interval (${errorLines.length} lines)`)

  const w = await writer(t, redis.url)
  await w.set('near:back', '1')
  await rec.invalidated('near:back')
  t.pass('invalidations flow again')
})

t.test('a hung server is noticed by the heartbeat', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.close())
  const rec = track(t, redis.url, { checkIntervalMs: 100 })
  t.equal(await rec.tracker.ready(5000), true)
  redis.pause()
  const paused = Date.now()
  await waitFor(() => !rec.tracker.active(), 10_000, 'inactive while the server is hung')
  t.comment(`hung server noticed after ${Date.now() - paused} ms`)
  t.ok(rec.flushes.includes('connection-lost'), 'flushed')
  redis.resume()
  t.equal(await rec.tracker.ready(10_000), true, 'active again after resume')
  const w = await writer(t, redis.url)
  await w.set('near:resumed', '1')
  await rec.invalidated('near:resumed')
})

t.test('a throwing invalidate handler flushes instead of crashing', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.close())
  const rec = track(t, redis.url, { invalidate: () => { throw new Error('boom') } })
  t.equal(await rec.tracker.ready(5000), true)
  const w = await writer(t, redis.url)
  await w.set('near:a', '1')
  await w.set('near:b', '1')
  await waitFor(() => rec.flushes.filter((f) => f === 'handler-failed').length === 2, 5000, 'two flushes')
  t.equal(rec.logs.filter((l) => l.msg.includes('invalidate handler threw')).length, 1, 'logged once per interval')
  t.equal(rec.tracker.active(), true)
})

t.test('close ends tracking, flushes and leaves nothing running', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.close())
  const rec = track(t, redis.url)
  t.equal(await rec.tracker.ready(5000), true)
  const w = await writer(t, redis.url)
  const clients = async (): Promise<number> => String(await w.client('LIST')).split('\n').filter((l) => l.includes('name=switchyard-tracker-test')).length
  t.equal(await clients(), 1, 'one connection per master')
  const pending = rec.tracker.ready(60_000)
  await rec.tracker.close()
  t.equal(rec.tracker.active(), false)
  t.same(rec.flushes, ['closed'])
  t.equal(await rec.tracker.ready(1000), false, 'ready() after close is false')
  t.equal(await pending, true, 'a ready() that was already active resolved at once')
  await rec.tracker.close()
  let left = await clients()
  for (const end = Date.now() + 5000; left > 0 && Date.now() < end; left = await clients()) await new Promise((r) => setTimeout(r, 10))
  t.equal(left, 0, 'the connection is gone')
})

t.test('a ready() waiting on a dead server resolves false on close', async (t) => {
  const redis = await startRedis()
  await redis.close()
  const rec = track(t, redis.url)
  const waiting = rec.tracker.ready(60_000)
  await rec.tracker.close()
  t.equal(await waiting, false)
  t.same(rec.flushes, [], 'nothing was tracked, so nothing to flush')
})

t.test('through Sentinel', async (t) => {
  const master = await startRedis()
  t.teardown(() => master.close())
  const sentinel = await startSentinel(master)
  t.teardown(() => sentinel.close())
  const rec = track(t, sentinel.url)
  t.equal(await rec.tracker.ready(10_000), true, 'tracking the master Sentinel names')
  const w = await writer(t, master.url)
  await w.set('near:s', '1')
  await rec.invalidated('near:s')
})

t.test('Redis Cluster: every master is tracked', async (t) => {
  const cluster = await startRedisCluster()
  t.teardown(() => cluster.close())
  const rec = track(t, cluster.url)
  t.equal(await rec.tracker.ready(10_000), true, 'active once every master is tracked')

  const w = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })), { redisOptions: { maxRetriesPerRequest: 1 } })
  w.on('error', () => {})
  t.teardown(() => w.disconnect())
  const keys = Array.from({ length: 30 }, (_, i) => `near:k${i}`)
  const from = rec.invalidations.length
  for (const k of keys) await w.set(k, '1')
  const perMaster = await Promise.all(cluster.ports.map(async (port) => {
    const c = await writer(t, `redis://127.0.0.1:${port}`)
    return c.dbsize()
  }))
  t.ok(perMaster.every((n) => n > 0), `the keys landed on every master (${perMaster.join(', ')})`)
  for (const k of keys) await rec.invalidated(k, from)
  t.pass('every write was seen, whichever master took it')

  await cluster.stop(1)
  await waitFor(() => rec.flushes.includes('connection-lost'), 5000, 'flush after a master stopped')
  t.equal(rec.tracker.active(), false, 'inactive while a master is down')
  await cluster.start(1)
  t.equal(await rec.tracker.ready(20_000), true, 'active again once the master is back')
  const after = rec.invalidations.length
  for (const k of keys) await w.set(k, '2').catch(() => w.set(k, '2'))
  for (const k of keys) await rec.invalidated(k, after)
  t.pass('invalidations flow from every master again')

  // Move slot 0 (emptied first) to another master, the way a reshard ends: the slot map
  // changes without any connection closing.
  await cluster.flushall()
  await waitFor(() => rec.flushes.includes('flushall'), 5000, 'flush after FLUSHALL')
  const nodes = await Promise.all(cluster.ports.map(async (port) => {
    const c = await writer(t, `redis://127.0.0.1:${port}`)
    return { c, id: String(await c.cluster('MYID')), slots: await c.cluster('SLOTS') }
  }))
  const ownsSlot0 = (n: (typeof nodes)[number]): boolean => n.slots.some(([from, , master]) => from === 0 && master[1] === Number(n.c.options.port))
  const src = nodes.find(ownsSlot0)
  const dst = nodes.find((n) => n !== src)
  if (src === undefined || dst === undefined) throw new Error('no owner of slot 0')
  const flushesBefore = rec.flushes.filter((f) => f === 'topology-changed').length
  await dst.c.cluster('SETSLOT', 0, 'IMPORTING', src.id)
  await src.c.cluster('SETSLOT', 0, 'MIGRATING', dst.id)
  const moved = Date.now()
  for (const n of [dst, src, ...nodes.filter((n) => n !== src && n !== dst)]) await n.c.cluster('SETSLOT', 0, 'NODE', dst.id)
  await waitFor(() => rec.flushes.filter((f) => f === 'topology-changed').length > flushesBefore, 10_000, 'flush after the slot moved')
  t.comment(`slot move noticed after ${Date.now() - moved} ms`)
  t.equal(await rec.tracker.ready(10_000), true, 'active again: the masters did not change')
  const last = rec.invalidations.length
  for (const k of keys) await w.set(k, '3').catch(() => w.set(k, '3'))
  for (const k of keys) await rec.invalidated(k, last)
  t.pass('invalidations flow after the move')
})
