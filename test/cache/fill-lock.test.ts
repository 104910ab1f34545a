import t from 'tap'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Redis } from 'ioredis'
import { RedisFillLock, type FillTicket, type RedisFillLockOptions } from '../../src/cache/fill-lock.js'
import { sha256Hex } from '../../src/cache/cache-key.js'
import { waitFor } from '../fixtures/proxy.js'
import { startRedis } from '../fixtures/redis.js'
import { startRedisCluster } from '../fixtures/redis-cluster.js'

const PREFIX = 'fl-test:'
/** The command timeout of the outage tests (what "promptly" is measured against). */
const TIMEOUT_MS = 100
/**
 * Elsewhere a generous one: a command timing out on a loaded test machine fails open (correct,
 * but not what those tests look at).
 */
const SLACK_MS = 2000
const silent = pino({ level: 'silent' })

type Tap = Parameters<Parameters<typeof t.test>[0]>[0]
type Opener = (opts?: Partial<RedisFillLockOptions>) => Promise<RedisFillLock>

/** A lock factory on `url`: every lock is ready before use and closed at teardown. */
function locks(t: Tap, url: string): Opener {
  return async (opts = {}) => {
    const lock = new RedisFillLock({ url, keyPrefix: PREFIX, timeoutMs: SLACK_MS, lockTtlMs: 10_000, maxWaitMs: 5000, logger: silent, maxReconnectDelayMs: 100, ...opts })
    t.teardown(() => lock.close())
    t.ok(await lock.ready(5000), 'lock connected and subscribed')
    return lock
  }
}

type Leader = Extract<FillTicket, { leader: true }>
type Follower = Extract<FillTicket, { leader: false }>
const leaders = (ts: FillTicket[]): Leader[] => ts.filter((x): x is Leader => x.leader)
const followers = (ts: FillTicket[]): Follower[] => ts.filter((x): x is Follower => !x.leader)
const lockKey = (key: string): string => `${PREFIX}l:${sha256Hex(key)}`

/** One leader among many acquirers on several instances; its release wakes every follower. */
async function oneLeaderWakesAll(t: Tap, open: Opener, inspect: Redis | undefined): Promise<void> {
  const instances = await Promise.all([open(), open(), open()])
  const key = `GET /one-leader ${Math.random()}`
  const tickets = await Promise.all(instances.flatMap((l) => Array.from({ length: 10 }, () => l.acquire(key))))
  const [leader] = leaders(tickets)
  t.equal(leaders(tickets).length, 1, 'exactly one leader among 30 acquirers on 3 instances')
  t.equal(leader.locked, true, 'the leader holds the lock')
  const waiting = followers(tickets)
  t.equal(waiting.length, 29)
  if (inspect !== undefined) {
    // Only digests in key names: the request bytes of the key never reach Redis.
    const names = await inspect.keys(`${PREFIX}*`)
    t.same(names, [lockKey(key)], 'the lock key is <prefix>l:<sha256 hex>')
    t.match(names[0], /^fl-test:l:[0-9a-f]{64}$/)
  }
  const woken: number[] = []
  const started = performance.now()
  const waits = waiting.map((f) => f.wait().then((how) => { woken.push(performance.now() - started); return how }))
  await leader.release()
  const released = performance.now() - started
  const outcomes = await Promise.all(waits)
  t.ok(outcomes.every((o) => o === 'released'), 'every follower woken by the release')
  woken.sort((a, b) => a - b)
  t.comment(`release took ${released.toFixed(2)} ms; follower wake latency from release(): min ${woken[0].toFixed(2)} ms, median ${woken[woken.length >> 1].toFixed(2)} ms, max ${woken[woken.length - 1].toFixed(2)} ms`)
  t.ok(woken[woken.length - 1] < 1000, 'woken promptly, not by the max_wait_ms timer')
  if (inspect !== undefined) t.equal(await inspect.exists(lockKey(key)), 0, 'the lock is gone')
  await leader.release()
  const again = await instances[1].acquire(key)
  t.equal(again.leader, true, 'released twice is harmless; the key can be led again')
  if (again.leader) await again.release()
}

t.test('redis fill lock (standalone)', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.close())
  const inspect = new Redis(redis.url, { maxRetriesPerRequest: 1 })
  t.teardown(() => inspect.disconnect())
  t.test('one leader among concurrent acquirers on three instances; release wakes the followers', (t) => oneLeaderWakesAll(t, locks(t, redis.url), inspect))

  t.test('a follower times out after max_wait_ms when the leader never releases', async (t) => {
    const open = locks(t, redis.url)
    const a = await open()
    const b = await open({ maxWaitMs: 300 })
    const lead = await a.acquire('never-released')
    t.equal(lead.leader, true)
    const follow = await b.acquire('never-released')
    if (follow.leader) { t.fail('expected a follower'); return }
    const started = performance.now()
    t.equal(await follow.wait(), 'timeout')
    const waited = performance.now() - started
    t.comment(`follower gave up after ${waited.toFixed(0)} ms (max_wait_ms 300)`)
    t.ok(waited >= 250 && waited < 1500, 'waited about max_wait_ms')
    if (lead.leader) await lead.release()
  })

  t.test('the lock TTL frees a crashed leader\'s lock', async (t) => {
    const open = locks(t, redis.url)
    const crashed = await open({ lockTtlMs: 300 })
    const lead = await crashed.acquire('crash')
    t.equal(lead.leader, true)
    const pttl = await inspect.pttl(lockKey('crash'))
    t.ok(pttl > 0 && pttl <= 300, `the lock carries the TTL (${pttl} ms)`)
    // The leader's process "dies": its connections close, the lock is never released.
    await crashed.close()
    const started = Date.now()
    await waitFor(async () => (await inspect.exists(lockKey('crash'))) === 0, 5000, 'the lock to expire')
    t.comment(`lock expired ${Date.now() - started} ms after the leader vanished`)
    const next = await (await open()).acquire('crash')
    t.equal(next.leader, true, 'a new leader takes the key')
    if (next.leader) await next.release()
  })

  t.test('a release with a stale token does not delete a newer holder\'s lock', async (t) => {
    const open = locks(t, redis.url)
    const a = await open({ lockTtlMs: 150 })
    const b = await open()
    const old = await a.acquire('stale')
    if (!old.leader) { t.fail('expected a leader'); return }
    await waitFor(async () => (await inspect.exists(lockKey('stale'))) === 0, 5000, 'the first lock to expire')
    const newer = await b.acquire('stale')
    if (!newer.leader) { t.fail('expected a leader'); return }
    const token = await inspect.get(lockKey('stale'))
    await old.release()
    t.equal(await inspect.get(lockKey('stale')), token, 'the newer holder keeps its lock')
    const third = await a.acquire('stale')
    t.equal(third.leader, false, 'and a third acquirer still follows it')
    await newer.release()
    if (!third.leader) t.equal(await third.wait(), 'released', 'woken by the newer holder\'s release')
    t.equal(await inspect.exists(lockKey('stale')), 0)
  })

  t.test('max_wait_ms 0: followers never wait', async (t) => {
    const open = locks(t, redis.url)
    const a = await open()
    const b = await open({ maxWaitMs: 0 })
    const lead = await a.acquire('no-wait')
    const follow = await b.acquire('no-wait')
    if (follow.leader) { t.fail('expected a follower'); return }
    t.equal(await follow.wait(), 'timeout')
    if (lead.leader) await lead.release()
  })

  t.test('closing the lock ends every wait', async (t) => {
    const open = locks(t, redis.url)
    const a = await open()
    const b = await open()
    const lead = await a.acquire('closing')
    const follow = await b.acquire('closing')
    if (follow.leader) { t.fail('expected a follower'); return }
    const wait = follow.wait()
    await b.close()
    t.equal(await wait, 'timeout', 'the waiter goes to fetch itself')
    t.match(await b.acquire('closing'), { leader: true, locked: false }, 'a closed lock fails open')
    if (lead.leader) await lead.release()
  })

  t.test('redis stopped, then back: acquire fails open promptly, then locks again', async (t) => {
    const open = locks(t, redis.url)
    const lines: string[] = []
    const sink = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done() } })
    const lock = await open({ logger: pino({ level: 'warn' }, sink), timeoutMs: TIMEOUT_MS })
    const follower = await open({ maxWaitMs: 60_000 })
    const held = await lock.acquire('held-when-stopped')
    const waiting = await follower.acquire('held-when-stopped')
    if (waiting.leader) { t.fail('expected a follower'); return }
    const wait = waiting.wait()
    const stopped = performance.now()
    await redis.stop()
    // Its subscription died with the server: the release could never arrive, so no waiting on it.
    t.equal(await wait, 'timeout', 'a waiting follower is let go')
    t.comment(`waiting follower let go ${(performance.now() - stopped).toFixed(0)} ms after the stop began (max_wait_ms 60000)`)
    const times: number[] = []
    for (let i = 0; i < 20; i++) {
      const started = performance.now()
      const ticket = await lock.acquire(`down-${i}`)
      times.push(performance.now() - started)
      t.same({ leader: ticket.leader, locked: ticket.leader && ticket.locked }, { leader: true, locked: false }, 'fails open as a leader without a lock')
      if (ticket.leader) await ticket.release()
    }
    t.comment(`acquire with redis stopped: max ${Math.max(...times).toFixed(2)} ms`)
    t.ok(Math.max(...times) < TIMEOUT_MS * 5, 'every acquire resolved promptly')
    if (held.leader) await held.release()
    t.equal(lines.filter((l) => l.includes('cache fill lock')).length, 1, 'one log line for the whole outage')
    await redis.start()
    await waitFor(async () => {
      const x = await lock.acquire('after-restart')
      if (x.leader) await x.release()
      return x.leader && x.locked
    }, 10_000, 'the lock to work again after the restart')
    t.ok(await follower.ready(10_000), 'the subscriber resubscribes after the restart')
    const a = await lock.acquire('after-restart-2')
    const b = await follower.acquire('after-restart-2')
    t.equal(a.leader && !b.leader, true, 'coalescing works again')
    if (a.leader) await a.release()
    if (!b.leader) t.equal(await b.wait(), 'released')
  })

  t.test('redis paused (SIGSTOP): acquire fails open within a bounded time', async (t) => {
    const open = locks(t, redis.url)
    const lock = await open({ timeoutMs: TIMEOUT_MS })
    redis.pause()
    t.teardown(() => redis.resume())
    const times: number[] = []
    for (let i = 0; i < 5; i++) {
      const started = performance.now()
      const ticket = await lock.acquire(`paused-${i}`)
      times.push(performance.now() - started)
      t.equal(ticket.leader && !ticket.locked, true, 'leader without a lock')
      if (ticket.leader) await ticket.release()
    }
    t.comment(`acquire with redis paused: ${times.map((x) => x.toFixed(0)).join(', ')} ms`)
    t.ok(Math.max(...times) < TIMEOUT_MS * 5, 'bounded by the command timeout')
    redis.resume()
    await waitFor(async () => {
      const x = await lock.acquire('after-pause')
      if (x.leader) await x.release()
      return x.leader && x.locked
    }, 10_000, 'the lock to work again after SIGCONT')
  })
})

t.test('redis fill lock (redis+cluster://)', async (t) => {
  const cluster = await startRedisCluster()
  t.teardown(() => cluster.close())
  const open = locks(t, cluster.url)
  await oneLeaderWakesAll(t, open, undefined)
})
