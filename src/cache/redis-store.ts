/**
 * The shared CacheStore: every proxy instance reads and writes one Redis (standalone or through
 * Sentinel), with the layout documented in store.ts.
 *
 * Failure model: the cache is an optimisation, so Redis must never make the proxy slower than
 * no cache or fail a request.
 *  - every command carries ioredis `commandTimeout` (cache.redis.timeout_ms);
 *  - `enableOfflineQueue: false` rejects commands at once while disconnected instead of
 *    queueing them behind a reconnect, and `maxRetriesPerRequest: 0` never replays them;
 *  - `socketTimeout` destroys a connection that stops answering (a hung or SIGSTOPped server),
 *    so after one timeout window calls fail fast instead of each waiting `commandTimeout`;
 *  - `retryStrategy` reconnects forever with capped, jittered exponential backoff, so caching
 *    resumes by itself when Redis comes back;
 *  - get/set/delete never reject; each failure is counted through hooks.onError and logged at
 *    most once per `logIntervalMs` with a count of the suppressed ones.
 *
 * Hot path: get is one round trip, a pipeline of HGET (the URL's Vary names) and HMGET of the
 * variant those names would select. The names are guessed from a small per-process hint map
 * (default: no Vary), so only the first lookup of a varying URL in a process, or a lookup after
 * the origin changed its Vary, takes a second round trip. A variant found under guessed names
 * is a correct answer even if the index moved on: its key digests the names it was stored
 * with and the request's values for them, which is the RFC 9111 section 4.1 match.
 *
 * Writes and purges are Lua scripts (atomic, one round trip). They name keys they derive from
 * index records, which Redis Cluster forbids; Cluster is therefore not supported (standalone
 * and Sentinel are, through ioredis).
 */
import type { Logger } from 'pino'
import { createRedisClient, type RedisClient } from './redis-connection.js'
import { createHash } from 'node:crypto'
import { hostDigest, isDigest, normalizeHost, parseVary, variantDigest, type CacheKey, type RequestHeaders, type VaryNames } from './cache-key.js'
import type { CacheEntry, CacheStore, CacheStoreStats, StoreHooks, StoreOp } from './store.js'

export interface RedisStoreOptions {
  /** redis://, rediss:// or redis+sentinel:// (see redisOptionsFromUrl). */
  url: string
  /** Namespace of every key this store reads or writes (cache.key_prefix). */
  keyPrefix: string
  /** Bound on each Redis command (cache.redis.timeout_ms). */
  timeoutMs: number
  logger: Logger
  hooks?: StoreHooks
  /** At most one failure log line per this many ms (default 10 s). */
  logIntervalMs?: number
  /** Cap of the reconnect backoff (default 2 s). */
  maxReconnectDelayMs?: number
}

// How many URLs' Vary names one process remembers; about 130 bytes each, so ~1.3 MB at most.
const MAX_HINTS = 10_000

/**
 * Writes a variant and maintains the URL and host indexes. Server time (TIME) for expiry
 * stamps, so instances with skewed clocks agree; TIME in a script is allowed since Redis 5
 * replicates scripts by effects (the only mode from Redis 7).
 * KEYS: variant, url index, host index. ARGV: meta, body, ttl ms, Vary names, variant digest,
 * host-index member, variant key prefix.
 */
const SET_LUA = `
local vkey, ukey, hkey = KEYS[1], KEYS[2], KEYS[3]
local ttl = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + ttl
local newest = expires
local names = redis.call('HGET', ukey, 'n')
local fields = redis.call('HGETALL', ukey)
for i = 1, #fields, 2 do
  local f = fields[i]
  if string.byte(f, 1) == 61 then
    local d = string.sub(f, 2)
    if names ~= ARGV[4] then
      -- The origin changed its Vary: older variants would shadow this response (RFC 9111 4.1).
      if #d == 64 and string.match(d, '^%x+$') then redis.call('DEL', ARGV[7] .. d) end
      redis.call('HDEL', ukey, f)
    elseif tonumber(fields[i + 1]) <= now then
      redis.call('HDEL', ukey, f)
    elseif d ~= ARGV[5] then
      newest = math.max(newest, tonumber(fields[i + 1]))
    end
  end
end
redis.call('HSET', vkey, 'm', ARGV[1], 'b', ARGV[2])
redis.call('PEXPIRE', vkey, ttl)
redis.call('HSET', ukey, 'n', ARGV[4], 'k', ARGV[6], '=' .. ARGV[5], expires)
redis.call('PEXPIREAT', ukey, newest)
redis.call('ZADD', hkey, newest, ARGV[6])
redis.call('ZREMRANGEBYSCORE', hkey, '-inf', now)
local last = redis.call('ZRANGE', hkey, -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', hkey, last[2]) end
return 1
`

/**
 * Drops URLs with all their variants and their host-index members. Only keys of the form
 * prefix + kind + 64 hex digits are built, from digests checked here again.
 * KEYS: host index. ARGV: variant key prefix, url key prefix, url digests...
 */
const PURGE_LUA = `
local n = 0
for j = 3, #ARGV do
  local u = ARGV[j]
  if #u == 64 and string.match(u, '^%x+$') then
    local ukey = ARGV[2] .. u
    local fields = redis.call('HGETALL', ukey)
    for i = 1, #fields, 2 do
      local f = fields[i]
      if string.byte(f, 1) == 61 then
        local d = string.sub(f, 2)
        if #d == 64 and string.match(d, '^%x+$') then n = n + redis.call('DEL', ARGV[1] .. d) end
      elseif f == 'k' then
        redis.call('ZREM', KEYS[1], fields[i + 1])
      end
    end
    redis.call('DEL', ukey)
  end
end
return n
`

interface LuaScript {
  readonly lua: string
  readonly sha: string
}

function script(lua: string): LuaScript {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') }
}

const SET_SCRIPT = script(SET_LUA)
const PURGE_SCRIPT = script(PURGE_LUA)

// ZSCAN page size for prefix purges: small pages keep each call far below the command timeout.
const PURGE_PAGE = 256

export class RedisCacheStore implements CacheStore {
  readonly #redis: RedisClient
  readonly #prefix: string
  readonly #logger: Logger
  readonly #hooks: StoreHooks
  readonly #logIntervalMs: number
  /** URL digest -> its Vary names, for URLs that vary (see the file comment). */
  readonly #hints = new Map<string, VaryNames>()
  #lastLog = -Infinity
  #suppressed = 0
  #down = false
  #closed = false

  constructor(opts: RedisStoreOptions) {
    this.#prefix = opts.keyPrefix
    this.#logger = opts.logger
    this.#hooks = opts.hooks ?? {}
    this.#logIntervalMs = opts.logIntervalMs ?? 10_000
    this.#redis = createRedisClient(opts.url, { timeoutMs: opts.timeoutMs, maxReconnectDelayMs: opts.maxReconnectDelayMs ?? 2000, connectionName: 'switchyard-cache' })
    // Without an 'error' listener ioredis prints every reconnect failure to stderr.
    this.#redis.on('error', (err: Error) => {
      if (!this.#closed) this.#report(err, undefined)
    })
    this.#redis.on('ready', () => {
      if (!this.#down) return
      this.#down = false
      this.#logger.info('cache store: redis is back; caching resumes')
    })
  }

  /** Resolves true once connected (false after `timeoutMs`); the store works without waiting. */
  async ready(timeoutMs: number): Promise<boolean> {
    if (this.#redis.status === 'ready') return true
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer)
        this.#redis.off('ready', onReady)
        resolve(ok)
      }
      const onReady = (): void => done(true)
      const timer = setTimeout(() => done(false), timeoutMs)
      this.#redis.on('ready', onReady)
    })
  }

  async get(key: CacheKey, requestHeaders: RequestHeaders): Promise<CacheEntry | undefined> {
    const ukey = this.#key('u:', key.digest)
    const guess = this.#hints.get(key.digest) ?? ''
    const started = performance.now()
    try {
      const replies = await this.#redis.pipeline()
        .hget(ukey, 'n')
        .hmgetBuffer(this.#key('v:', variantDigest(key, guess, requestHeaders)), 'm', 'b')
        .exec()
      this.#observe('get', started)
      const names = pipelineReply(replies, 0)
      const hit = toEntry(pipelineReply(replies, 1))
      if (hit !== undefined || typeof names !== 'string' || names === guess) return hit
      this.#hint(key.digest, names)
      const again = performance.now()
      const reply = await this.#redis.hmgetBuffer(this.#key('v:', variantDigest(key, names, requestHeaders)), 'm', 'b')
      this.#observe('get', again)
      return toEntry(reply)
    } catch (err) {
      this.#fail('get', err, started)
      return undefined
    }
  }

  async set(key: CacheKey, vary: string | readonly string[] | undefined, requestHeaders: RequestHeaders, entry: CacheEntry, ttlMs: number): Promise<boolean> {
    const names = parseVary(vary)
    if (names === undefined || !(ttlMs > 0)) return false
    const vd = variantDigest(key, names, requestHeaders)
    const member = `${key.target} ${key.digest}`
    const started = performance.now()
    try {
      await this.#eval(SET_SCRIPT,
        [this.#key('v:', vd), this.#key('u:', key.digest), this.#key('h:', hostDigest(key.host))],
        [entry.meta, entry.body, Math.ceil(ttlMs), names, vd, member, this.#prefix + 'v:'])
      this.#observe('set', started)
      this.#hint(key.digest, names)
      return true
    } catch (err) {
      this.#fail('set', err, started)
      return false
    }
  }

  async delete(key: CacheKey): Promise<void> {
    const started = performance.now()
    try {
      await this.#purge(hostDigest(key.host), [key.digest])
      this.#observe('delete', started)
    } catch (err) {
      this.#fail('delete', err, started)
    }
  }

  async purgeUrl(key: CacheKey): Promise<number> {
    const started = performance.now()
    try {
      const n = await this.#purge(hostDigest(key.host), [key.digest])
      this.#observe('purge', started)
      return n
    } catch (err) {
      this.#fail('purge', err, started)
      throw err
    }
  }

  /**
   * Pages through one host's index with ZSCAN (bounded by that host's URLs, never the whole
   * keyspace) and purges each page's matches in one script call. Not atomic as a whole: a URL
   * stored under the prefix while the purge runs may survive it.
   */
  async purgePrefix(host: string, targetPrefix: string): Promise<number> {
    const hd = hostDigest(normalizeHost(host))
    const hkey = this.#key('h:', hd)
    let removed = 0
    let cursor = '0'
    do {
      const started = performance.now()
      try {
        const [next, flat] = await this.#redis.zscan(hkey, cursor, 'COUNT', PURGE_PAGE)
        const digests: string[] = []
        // Members alternate with scores; a member is "<target> <64 hex digest>".
        for (let i = 0; i < flat.length; i += 2) {
          const m = flat[i]
          const digest = m.slice(-64)
          if (m.length > 65 && isDigest(digest) && m.slice(0, -65).startsWith(targetPrefix)) digests.push(digest)
        }
        if (digests.length > 0) removed += await this.#purge(hd, digests)
        this.#observe('purge', started)
        cursor = next
      } catch (err) {
        this.#fail('purge', err, started)
        throw err
      }
    } while (cursor !== '0')
    return removed
  }

  writable(): boolean {
    return this.#redis.status === 'ready'
  }

  stats(): CacheStoreStats {
    return {}
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#redis.status === 'ready') {
      try {
        await this.#redis.quit()
      } catch {
        // Redis went away meanwhile: disconnect below is all that is left to do.
      }
    }
    this.#redis.disconnect(false)
  }

  #key(kind: 'u:' | 'v:' | 'h:', digest: string): string {
    return this.#prefix + kind + digest
  }

  async #purge(hd: string, urlDigests: string[]): Promise<number> {
    const n = await this.#eval(PURGE_SCRIPT, [this.#key('h:', hd)], [this.#prefix + 'v:', this.#prefix + 'u:', ...urlDigests])
    for (const d of urlDigests) this.#hints.delete(d)
    return typeof n === 'number' ? n : 0
  }

  /** EVALSHA, falling back to EVAL once when the server does not know the script (restart, failover). */
  async #eval(s: LuaScript, keys: string[], args: (string | Buffer | number)[]): Promise<unknown> {
    try {
      return await this.#redis.evalsha(s.sha, keys.length, ...keys, ...args)
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err
      return await this.#redis.eval(s.lua, keys.length, ...keys, ...args)
    }
  }

  #hint(urlDigest: string, names: VaryNames): void {
    if (names === '') {
      this.#hints.delete(urlDigest)
      return
    }
    if (this.#hints.get(urlDigest) === names) return
    if (this.#hints.size >= MAX_HINTS) {
      const oldest = this.#hints.keys().next()
      if (oldest.done !== true) this.#hints.delete(oldest.value)
    }
    this.#hints.set(urlDigest, names)
  }

  #observe(op: StoreOp, started: number): void {
    this.#hooks.observe?.(op, (performance.now() - started) / 1000)
  }

  #fail(op: StoreOp, err: unknown, started: number): void {
    this.#observe(op, started)
    const e = err instanceof Error ? err : new Error(String(err))
    this.#hooks.onError?.(op, e)
    this.#report(e, op)
  }

  /** Logs at most once per interval (a Redis outage fails every request; one line says so). */
  #report(err: Error, op: StoreOp | undefined): void {
    this.#down = true
    const now = Date.now()
    if (now - this.#lastLog < this.#logIntervalMs) {
      this.#suppressed++
      return
    }
    this.#logger.warn({ err, op, suppressed: this.#suppressed }, 'cache store: redis call failed; serving without cache')
    this.#lastLog = now
    this.#suppressed = 0
  }
}

/** The reply of command `i` of a pipeline, rethrowing its error. */
function pipelineReply(replies: [Error | null, unknown][] | null, i: number): unknown {
  const r = replies?.[i]
  if (r === undefined) throw new Error('redis pipeline returned no reply')
  if (r[0] !== null) throw r[0]
  return r[1]
}

function toEntry(reply: unknown): CacheEntry | undefined {
  if (!Array.isArray(reply)) return undefined
  const [meta, body] = reply as unknown[]
  if (!Buffer.isBuffer(meta) || !Buffer.isBuffer(body)) return undefined
  return { meta: meta.toString('utf8'), body }
}
