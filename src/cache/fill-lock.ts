/**
 * Cluster-wide request coalescing: concurrent misses for one key on every instance sharing a
 * Redis make one origin request. The first instance to miss takes a short lock; the others wait
 * until it is released (its answer is in the store by then), at most max_wait_ms, then look the
 * key up again or fetch themselves.
 *
 * Redis layout (all names built from digests, never from request bytes):
 *   <prefix>l:<sha256 of the fill key>   the lock, a random token, SET NX PX lock_ttl_ms
 *   <prefix>fill                         one pub/sub channel; a release publishes the digest
 *
 * Waiters hang on ONE subscriber connection, subscribed once per connection (never per key),
 * and are woken by the message, so a wake costs no polling. Classic PUBLISH reaches every node
 * of a Redis Cluster, and the lock is a single key, so a cluster URL works as well.
 *
 * Failure model as in redis-store.ts: the lock is an optimisation. Any Redis failure makes
 * acquire() resolve leader (with a no-op release) within the command timeout: a request never
 * waits on a broken Redis, nothing throws, and failures are logged at most once per interval.
 */
import { randomBytes, createHash } from 'node:crypto'
import type { Logger } from 'pino'
import type { CacheConfig } from '../config/schema.js'
import { sha256Hex } from './cache-key.js'
import { createRedisClient, type RedisClient } from './redis-connection.js'
import { resolveStoreName } from './store-registry.js'

/**
 * A leader fetches, and calls release() once its answer is stored (or will not be): `locked`
 * false means Redis could not be asked and nobody is coordinated with (fail open). A follower
 * waits, then looks the key up again.
 */
export type FillTicket =
  | { leader: true; locked: boolean; release(): Promise<void> }
  | { leader: false; wait(): Promise<WaitOutcome> }

/** released: the leader is done (look the key up again); timeout: gave up waiting (fetch). */
export type WaitOutcome = 'released' | 'timeout'


export interface FillLock {
  acquire(key: string): Promise<FillTicket>
  close(): Promise<void>
}

export interface RedisFillLockOptions {
  /** Any URL createRedisClient takes (standalone, Sentinel, cluster). */
  url: string
  keyPrefix: string
  /** Bound on each Redis command (cache.redis.timeout_ms). */
  timeoutMs: number
  /** How long a lock outlives a leader that never releases it (crashed, partitioned). */
  lockTtlMs: number
  /** How long a follower waits for the leader before fetching itself. */
  maxWaitMs: number
  logger: Logger
  /** At most one failure log line per this many ms (default 10 s). */
  logIntervalMs?: number
  /** Cap of the reconnect backoff (default 2 s). */
  maxReconnectDelayMs?: number
}

/**
 * Deletes the lock only while it still holds our token (a lock that expired and was taken by
 * another leader is theirs), then wakes the waiters. Also publishes when the lock is already
 * gone (expired during a slow fill): whoever waited on it can find our entry now.
 * KEYS: lock. ARGV: token, channel, message.
 */
const RELEASE_LUA = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('DEL', KEYS[1]) elseif v then return 0 end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`
const RELEASE_SHA = createHash('sha1').update(RELEASE_LUA).digest('hex')

/** Redis could not be asked: fetch without coordination. */
const FAILED_OPEN: FillTicket = { leader: true, locked: false, release: () => Promise.resolve() }

export class RedisFillLock implements FillLock {
  readonly #cmd: RedisClient
  readonly #sub: RedisClient
  readonly #prefix: string
  readonly #channel: string
  readonly #ttl: number
  readonly #maxWait: number
  readonly #logger: Logger
  readonly #logIntervalMs: number
  /** Lock digest -> wake-ups of the followers waiting on it in this process. */
  readonly #waiters = new Map<string, Set<(how: WaitOutcome) => void>>()
  #subscribed = false
  #closed = false
  #lastLog = -Infinity
  #suppressed = 0

  constructor(opts: RedisFillLockOptions) {
    this.#prefix = opts.keyPrefix
    this.#channel = `${opts.keyPrefix}fill`
    this.#ttl = opts.lockTtlMs
    this.#maxWait = opts.maxWaitMs
    this.#logger = opts.logger
    this.#logIntervalMs = opts.logIntervalMs ?? 10_000
    const policy = { timeoutMs: opts.timeoutMs, maxReconnectDelayMs: opts.maxReconnectDelayMs ?? 2000 }
    // Commands fail fast while Redis is down (no offline queue): a miss never waits on a reconnect.
    this.#cmd = createRedisClient(opts.url, { ...policy, connectionName: 'switchyard-fill-lock' })
    // We subscribe ourselves on every 'ready' (ioredis's own resubscribe would race ours), and
    // only then let followers wait: without a subscription nobody would wake them.
    this.#sub = createRedisClient(opts.url, { ...policy, connectionName: 'switchyard-fill-wait' }, { autoResubscribe: false })
    for (const c of [this.#cmd, this.#sub]) c.on('error', (err: Error) => this.#report(err))
    this.#sub.on('ready', () => this.#subscribe())
    // A lost subscription cannot deliver the release: the followers go fetch themselves now.
    this.#sub.on('close', () => {
      this.#subscribed = false
      this.#wakeAll('timeout')
    })
    this.#sub.on('message', (channel: string, id: string) => {
      if (channel === this.#channel) this.#wake(id)
    })
  }

  /** Resolves true once both connections can be used (false after `timeoutMs`); never required. */
  async ready(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    while (!(this.#subscribed && this.#cmd.status === 'ready')) {
      if (this.#closed || Date.now() >= deadline) return false
      await new Promise((r) => setTimeout(r, 10))
    }
    return true
  }

  async acquire(key: string): Promise<FillTicket> {
    if (this.#closed) return FAILED_OPEN
    // Digest of the fill key: the lock's name and the message carry no request bytes.
    const id = sha256Hex(key)
    const lockKey = `${this.#prefix}l:${id}`
    const token = randomBytes(16).toString('hex')
    // The waiter is registered BEFORE SET NX: a release that follows our failed SET is then
    // published while we listen, so no EXISTS re-check is needed (and a spurious early wake
    // only costs a store lookup). Without a subscription we could not be woken: no waiting.
    const follow = this.#subscribed ? this.#follow(id) : undefined
    let reply: string | null
    try {
      reply = await this.#cmd.set(lockKey, token, 'PX', this.#ttl, 'NX')
    } catch (err) {
      follow?.cancel()
      this.#report(err)
      return FAILED_OPEN
    }
    if (reply === 'OK') {
      follow?.cancel()
      let released: Promise<void> | undefined
      return { leader: true, locked: true, release: () => (released ??= this.#release(lockKey, token, id)) }
    }
    if (follow === undefined) return FAILED_OPEN
    return { leader: false, wait: () => follow.done }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    // Nobody may hang on a closed lock: every waiter fetches itself.
    this.#wakeAll('timeout')
    await Promise.all([this.#cmd, this.#sub].map(async (c) => {
      if (c.status === 'ready') {
        try { await c.quit() } catch { /* gone meanwhile: disconnect below */ }
      }
      c.disconnect(false)
    }))
  }

  /** A follower's wait: ends on the leader's message, or after max_wait_ms. */
  #follow(id: string): { done: Promise<WaitOutcome>; cancel(): void } {
    let set = this.#waiters.get(id)
    if (set === undefined) this.#waiters.set(id, set = new Set())
    const waiters = set
    let wake: (how: WaitOutcome) => void = () => {}
    const done = new Promise<WaitOutcome>((resolve) => {
      const timer = setTimeout(() => wake('timeout'), this.#maxWait)
      wake = (how) => {
        clearTimeout(timer)
        waiters.delete(wake)
        if (waiters.size === 0 && this.#waiters.get(id) === waiters) this.#waiters.delete(id)
        resolve(how)
      }
    })
    waiters.add(wake)
    return { done, cancel: () => wake('timeout') }
  }

  #wake(id: string): void {
    const set = this.#waiters.get(id)
    if (set !== undefined) for (const wake of [...set]) wake('released')
  }

  #wakeAll(how: WaitOutcome): void {
    for (const set of [...this.#waiters.values()]) for (const wake of [...set]) wake(how)
  }

  #subscribe(): void {
    if (this.#closed) return
    this.#sub.subscribe(this.#channel).then(() => {
      this.#subscribed = true
    }, (err: unknown) => {
      this.#report(err)
      // Still connected but the SUBSCRIBE failed (e.g. timed out): try again shortly.
      if (this.#sub.status === 'ready') setTimeout(() => this.#subscribe(), 1000).unref()
    })
  }

  async #release(lockKey: string, token: string, id: string): Promise<void> {
    const args = [lockKey, token, this.#channel, id]
    try {
      try {
        await this.#cmd.evalsha(RELEASE_SHA, 1, ...args)
      } catch (err) {
        if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err
        await this.#cmd.eval(RELEASE_LUA, 1, ...args)
      }
    } catch (err) {
      // Not released: the TTL frees the lock and the followers' wait is bounded anyway.
      this.#report(err)
    }
  }

  /** Logs at most once per interval (an outage fails every miss; one line says so). */
  #report(err: unknown): void {
    if (this.#closed) return
    const now = Date.now()
    if (now - this.#lastLog < this.#logIntervalMs) {
      this.#suppressed++
      return
    }
    this.#logger.warn({ err, suppressed: this.#suppressed }, 'cache fill lock: redis call failed; misses are not coalesced across instances')
    this.#lastLog = now
    this.#suppressed = 0
  }
}

/**
 * The fill lock `config` asks for: Redis when the store is Redis and cache.coalesce.enabled;
 * undefined otherwise (the memory store is per process: in-process collapsing is all there is).
 */
export function createFillLock(config: CacheConfig, deps: { logger: Logger; env?: NodeJS.ProcessEnv }): RedisFillLock | undefined {
  if (!config.coalesce.enabled || resolveStoreName(config, deps) !== 'redis') return undefined
  const url = config.redis.url ?? (deps.env ?? process.env).REDIS_URL
  if (url === undefined || url === '') return undefined
  return new RedisFillLock({
    url,
    keyPrefix: config.key_prefix,
    timeoutMs: config.redis.timeout_ms,
    lockTtlMs: config.coalesce.lock_ttl_ms,
    maxWaitMs: config.coalesce.max_wait_ms,
    logger: deps.logger
  })
}
