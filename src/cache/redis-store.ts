/**
 * The shared CacheStore: every proxy instance reads and writes one Redis (standalone, through
 * Sentinel, or a Redis Cluster), with the layout documented in store.ts.
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
 *  (redis-connection.ts builds every connection with these options.)
 *
 * Hot path: a hit is one command, LRANGE of the variant the request selects under the URL's
 * Vary names (layout: toEntry at the end of this file). The names are guessed from a small
 * per-process hint map (default: Vary: Origin, which the HTTP layer always adds); only when
 * that misses is the URL index read (HGET), and the variant read again if the names differ.
 * So a miss costs two round trips (it goes upstream anyway) and the first lookup of a varying
 * URL in a process three. A variant found under guessed names is a correct answer even if the
 * index moved on: its key digests the names it was stored with and the request's values for
 * them, which is the RFC 9111 section 4.1 match. With the near cache, a hit copied before
 * costs no round trip at all.
 *
 * Writes and purges of one URL are Lua scripts on the URL's slot (atomic, one round trip).
 * The authority, host-name and tag indexes live in their own slots and are written first, by
 * their own small script each: an index may name a URL that is gone (purges skip it), never
 * miss one that is stored.
 */
import type { Logger } from 'pino'
import { createHash } from 'node:crypto'
import { createRedisClient, masters, type ConnectionPolicy, type RedisClient } from './redis-connection.js'
import { InvalidationTracker } from './invalidation-tracker.js'
import { NearCache } from './near-cache.js'
import { RespLrange, plainRedisTarget } from './resp-lrange.js'
import { hasPort, hostDigest, hostnameDigest, hostnameOf, isDigest, normalizeHost, parseVary, tagDigest, variantDigest, type CacheKey, type RequestHeaders, type VaryNames } from './cache-key.js'
import type { CacheEntry, CacheStore, CacheStoreStats, PurgeOptions, StoreHooks, StoreOp } from './store.js'

export interface RedisStoreOptions {
  /** redis://, rediss://, redis+sentinel:// or redis+cluster:// (see redis-connection.ts). */
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
  /** Keep recent hits in process, kept coherent by Redis CLIENT TRACKING (cache.near_cache). */
  nearCache?: { maxBytes: number }
}



// How many URLs' Vary names one process remembers; about 130 bytes each, so ~1.3 MB at most.
const MAX_HINTS = 10_000
// What a URL's Vary names are guessed to be before we know: the HTTP layer keys every
// response on Origin (http-cache.ts keyVary), so most URLs have exactly these.
const DEFAULT_NAMES: VaryNames = 'origin'

/**
 * Writes a variant and its URL's index (one slot: the URL's hash tag). Server time (TIME) for
 * expiry stamps, so instances with skewed clocks agree; the variant's head carries its expiry
 * (the near cache's copies end with it). The variant is replaced whole (DEL first), so a
 * soft-purge mark of the response it replaces does not stick to it.
 * KEYS: variant, url index. ARGV: meta, ttl ms, Vary names, variant digest, variant key
 * prefix of this URL, then the body's parts.
 */
const SET_LUA = `
local vkey, ukey = KEYS[1], KEYS[2]
local ttl = tonumber(ARGV[2])
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
    if names ~= ARGV[3] then
      -- The origin changed its Vary: older variants would shadow this response (RFC 9111 4.1).
      if #d == 64 and string.match(d, '^%x+$') then redis.call('DEL', ARGV[5] .. d) end
      redis.call('HDEL', ukey, f)
    elseif tonumber(fields[i + 1]) <= now then
      redis.call('HDEL', ukey, f)
    elseif d ~= ARGV[4] then
      newest = math.max(newest, tonumber(fields[i + 1]))
    end
  end
end
redis.call('DEL', vkey)
local head = 'SY3:' .. string.rep('0', 13) .. string.format('%013.0f', expires) .. ARGV[1]
redis.call('RPUSH', vkey, head, unpack(ARGV, 6))
redis.call('PEXPIRE', vkey, ttl)
redis.call('HSET', ukey, 'n', ARGV[3], '=' .. ARGV[4], expires)
redis.call('PEXPIREAT', ukey, newest)
return 1
`

/**
 * Adds a member to an index (a sorted set scored by expiry time), trims expired members and
 * lets the index expire with its longest-lived member. ZADD GT: a shorter-lived write never
 * shortens a member's life (Redis >= 6.2).
 * KEYS: index. ARGV: ttl ms, member.
 */
const INDEX_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'GT', now + tonumber(ARGV[1]), ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
return 1
`

/**
 * Drops a URL with all its variants, or (soft) marks each live variant stale at the given time.
 * Only keys of the form variant prefix + 64 hex digits are built, from digests checked here
 * again. The indexes that name the URL (authority, tags) are left alone: removing a member
 * here could remove one a concurrent write just added (they are trimmed by expiry, and purges
 * skip URLs that are gone). Returns { responses found, { variant digests } } so the caller can
 * drop its own near-cache copies at once.
 * KEYS: url index. ARGV: variant key prefix of this URL, '1' for soft, time ms (13 digits).
 */
const PURGE_LUA = `
local n = 0
local found = {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local f = fields[i]
  if string.byte(f, 1) == 61 then
    local d = string.sub(f, 2)
    if #d == 64 and string.match(d, '^%x+$') then
      local vkey = ARGV[1] .. d
      found[#found + 1] = d
      if ARGV[2] == '1' then
        local head = redis.call('LINDEX', vkey, 0)
        if head then
          -- The mark is the fixed-width field after 'SY3:' (see toEntry).
          redis.call('LSET', vkey, 0, string.sub(head, 1, 4) .. ARGV[3] .. string.sub(head, 18))
          n = n + 1
        end
      else
        n = n + redis.call('DEL', vkey)
      end
    end
  end
end
if ARGV[2] ~= '1' then redis.call('DEL', KEYS[1]) end
return { n, found }
`

interface LuaScript {
  readonly lua: string
  readonly sha: string
}

function script(lua: string): LuaScript {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') }
}

const SET_SCRIPT = script(SET_LUA)
const INDEX_SCRIPT = script(INDEX_LUA)
const PURGE_SCRIPT = script(PURGE_LUA)

/** The longest a response is kept in Redis: ten years. */
const MAX_TTL_MS = 10 * 365 * 24 * 3600 * 1000

// ZSCAN page size for prefix and tag purges: small pages keep each call far below the command timeout.
const PURGE_PAGE = 256

export class RedisCacheStore implements CacheStore {
  readonly #redis: RedisClient
  readonly #prefix: string
  readonly #logger: Logger
  readonly #hooks: StoreHooks
  readonly #logIntervalMs: number
  /** URL digest -> its Vary names, for URLs whose names are not DEFAULT_NAMES (see the file comment). */
  readonly #hints = new Map<string, VaryNames>()
  readonly #near: NearCache<CacheEntry> | undefined
  /** The hit path's own connection (plain redis:// URLs; see resp-lrange.ts). */
  readonly #fast: RespLrange | undefined
  readonly #tracker: InvalidationTracker | undefined
  #lastLog = -Infinity
  #suppressed = 0
  #down = false
  #closed = false

  constructor(opts: RedisStoreOptions) {
    this.#prefix = opts.keyPrefix
    this.#logger = opts.logger
    this.#hooks = opts.hooks ?? {}
    this.#logIntervalMs = opts.logIntervalMs ?? 10_000
    const policy: ConnectionPolicy = { timeoutMs: opts.timeoutMs, maxReconnectDelayMs: opts.maxReconnectDelayMs ?? 2000, connectionName: 'switchyard-cache' }
    this.#redis = createRedisClient(opts.url, policy)
    const target = plainRedisTarget(opts.url)
    this.#fast = target === undefined ? undefined : new RespLrange({ ...target, timeoutMs: opts.timeoutMs, maxReconnectDelayMs: policy.maxReconnectDelayMs })
    if (opts.nearCache !== undefined && opts.nearCache.maxBytes > 0) {
      const near = new NearCache<CacheEntry>({ maxBytes: opts.nearCache.maxBytes })
      this.#near = near
      // Only variants are copied, so only their keys are tracked (fewer messages than the whole prefix).
      this.#tracker = new InvalidationTracker(
        { url: opts.url, prefixes: [this.#prefix + 'v:'], policy: { ...policy, connectionName: 'switchyard-cache-tracker' }, logger: opts.logger },
        { invalidate: (keys) => { for (const k of keys) near.invalidate(k) }, flush: () => near.clear() })
    }
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
    const guess = this.#hints.get(key.digest) ?? DEFAULT_NAMES
    const vkey = this.#variantKey(key.digest, variantDigest(key, guess, requestHeaders))
    // The near cache answers only while tracking holds (else a purge elsewhere could be missed).
    const near = this.#tracker?.active() === true ? this.#near : undefined
    const copy = near?.get(vkey)
    if (copy !== undefined) {
      this.#hooks.near?.('hit')
      return copy
    }
    const ticket = near?.begin(vkey)
    const started = performance.now()
    try {
      // One command when the guess is right (the common case); the URL's names only on a miss.
      const fast = this.#fast?.ready === true ? this.#fast : undefined
      const hit = toEntry(fast !== undefined ? await fast.lrange(vkey) : await this.#redis.lrangeBuffer(vkey, 0, -1))
      this.#observe('get', started)
      if (hit !== undefined) {
        if (ticket !== undefined) {
          this.#hooks.near?.('miss')
          // The copy ends when Redis drops the entry, even if Redis reports that late.
          ticket.fill(hit.entry, hit.entry.body.length + hit.entry.meta.length * 2, hit.expiresAt)
        }
        return hit.entry
      }
      ticket?.cancel()
      const again = performance.now()
      const names = await this.#redis.hget(this.#urlKey(key.digest), 'n')
      this.#observe('get', again)
      if (typeof names !== 'string' || names === guess) return undefined
      this.#hint(key.digest, names)
      const third = performance.now()
      const reply = await this.#redis.lrangeBuffer(this.#variantKey(key.digest, variantDigest(key, names, requestHeaders)), 0, -1)
      this.#observe('get', third)
      return toEntry(reply)?.entry
    } catch (err) {
      ticket?.cancel()
      this.#fail('get', err, started)
      return undefined
    }
  }

  async set(key: CacheKey, vary: string | readonly string[] | undefined, requestHeaders: RequestHeaders, entry: CacheEntry, ttlMs: number): Promise<boolean> {
    const names = parseVary(vary)
    if (names === undefined || !(ttlMs > 0)) return false
    // Kept at most MAX_TTL_MS (a cache may drop an entry sooner than its freshness): the variant's
    // head holds its expiry as 13 digits, and an Expires in 2286 is 14.
    const ttl = Math.min(Math.ceil(ttlMs), MAX_TTL_MS)
    const vd = variantDigest(key, names, requestHeaders)
    const ad = hostDigest(key.host)
    const member = `${key.target} ${key.digest}`
    const started = performance.now()
    try {
      // The indexes first (each in its own slot), so no stored response is missing from them.
      await Promise.all([
        this.#eval(INDEX_SCRIPT, [this.#key('h:', ad)], [ttl, member]),
        this.#eval(INDEX_SCRIPT, [this.#key('a:', hostnameDigest(hostnameOf(key.host)))], [ttl, key.host]),
        ...[...new Set(entry.tags ?? [])].map((tag) => this.#eval(INDEX_SCRIPT, [this.#key('t:', tagDigest(tag))], [ttl, key.digest]))
      ])
      // Read-your-writes: our own copy goes now, not when Redis's invalidation arrives; and
      // again once written, since a read started meanwhile may have copied the old response.
      const vkey = this.#variantKey(key.digest, vd)
      this.#near?.invalidate(vkey)
      await this.#eval(SET_SCRIPT,
        [vkey, this.#urlKey(key.digest)],
        [entry.meta, ttl, names, vd, this.#variantPrefix(key.digest), ...bodyParts(entry.body)])
      this.#near?.invalidate(vkey)
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
      await this.#purgeUrls([key.digest], {})
      this.#observe('delete', started)
    } catch (err) {
      this.#fail('delete', err, started)
    }
  }

  async purgeUrl(key: CacheKey, opts: PurgeOptions = {}): Promise<number> {
    return this.#purging(() => this.#purgeUrls([key.digest], opts))
  }

  /**
   * Pages through each matching authority's index with ZSCAN (bounded by that host's URLs,
   * never the whole keyspace) and purges each page's matches. Not atomic as a whole: a URL
   * stored under the prefix while the purge runs may survive it.
   */
  async purgePrefix(host: string, targetPrefix: string, opts: PurgeOptions = {}): Promise<number> {
    let removed = 0
    for (const authority of await this.#authoritiesOf(normalizeHost(host))) {
      removed += await this.#scan(this.#key('h:', hostDigest(authority)), (m) => {
        // A member is "<target> <64 hex URL digest>".
        const digest = m.slice(-64)
        return m.length > 65 && isDigest(digest) && m.slice(0, -65).startsWith(targetPrefix) ? digest : undefined
      }, opts)
    }
    return removed
  }

  async purgeTags(tags: readonly string[], opts: PurgeOptions = {}): Promise<number> {
    let removed = 0
    for (const tag of new Set(tags)) {
      const index = this.#key('t:', tagDigest(tag))
      removed += await this.#scan(index, (m) => isDigest(m) ? m : undefined, opts)
    }
    return removed
  }

  async authorities(hostname: string): Promise<string[]> {
    return this.#purging(() => this.#authoritiesOf(normalizeHost(hostname)))
  }

  writable(): boolean {
    return this.#redis.status === 'ready'
  }

  stats(): CacheStoreStats {
    const near = this.#near?.stats()
    return near === undefined ? {} : { near: { entries: near.entries, bytes: near.bytes } }
  }

  /** Resolves true once the near cache's invalidation tracking holds (false without a near cache, or after `timeoutMs`). */
  async nearReady(timeoutMs: number): Promise<boolean> {
    return this.#tracker === undefined ? false : this.#tracker.ready(timeoutMs)
  }

  /** The master nodes (one unless a cluster): for tests and for the near cache's tracking. */
  masters(): ReturnType<typeof masters> {
    return masters(this.#redis)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#tracker?.close()
    this.#near?.clear()
    this.#fast?.close()
    if (this.#redis.status === 'ready') {
      try {
        await this.#redis.quit()
      } catch {
        // Redis went away meanwhile: disconnect below is all that is left to do.
      }
    }
    this.#redis.disconnect(false)
  }

  #key(kind: 'h:' | 'a:' | 't:', digest: string): string {
    return `${this.#prefix}${kind}{${digest}}`
  }

  #urlKey(urlDigest: string): string {
    return `${this.#prefix}u:{${urlDigest}}`
  }

  #variantPrefix(urlDigest: string): string {
    return `${this.#prefix}v:{${urlDigest}}:`
  }

  #variantKey(urlDigest: string, vd: string): string {
    return this.#variantPrefix(urlDigest) + vd
  }

  /** An authority as given, or every authority stored under a host name given without port. */
  async #authoritiesOf(host: string): Promise<string[]> {
    if (hasPort(host)) return [host]
    const stored = await this.#redis.zrange(this.#key('a:', hostnameDigest(host)), 0, -1)
    return [...new Set([host, ...stored.filter((a) => hostnameOf(a) === host)])]
  }

  /** ZSCANs an index, purging the URLs `pick` finds in its members page by page. */
  async #scan(index: string, pick: (member: string) => string | undefined, opts: PurgeOptions): Promise<number> {
    let removed = 0
    let cursor = '0'
    do {
      const [next, flat] = await this.#purging(() => this.#redis.zscan(index, cursor, 'COUNT', PURGE_PAGE))
      const digests: string[] = []
      // Members alternate with scores.
      for (let i = 0; i < flat.length; i += 2) {
        const d = pick(flat[i])
        if (d !== undefined) digests.push(d)
      }
      if (digests.length > 0) removed += await this.#purging(() => this.#purgeUrls(digests, opts))
      cursor = next
    } while (cursor !== '0')
    return removed
  }

  /** Runs one purge step, timed and counted; rethrows (a purge must say it failed). */
  async #purging<T>(step: () => Promise<T>): Promise<T> {
    const started = performance.now()
    try {
      const r = await step()
      this.#observe('purge', started)
      return r
    } catch (err) {
      this.#fail('purge', err, started)
      throw err
    }
  }

  /** Purges URLs, each a script on its own slot. */
  async #purgeUrls(urlDigests: string[], opts: PurgeOptions): Promise<number> {
    const soft = opts.soft === true
    // The mark is a fixed-width field of the variant's head (see HEAD_PREFIX).
    const at = String(Math.max(1, Math.round(opts.now ?? Date.now()))).padStart(13, '0').slice(-13)
    const found = await Promise.all(urlDigests.filter(isDigest).map(async (u) => {
      const r = await this.#eval(PURGE_SCRIPT, [this.#urlKey(u)], [this.#variantPrefix(u), soft ? '1' : '0', at])
      this.#hints.delete(u)
      if (!Array.isArray(r)) return 0
      const [n, variants] = r as [unknown, unknown]
      // Our own copies go at once (other instances' when Redis's invalidation reaches them).
      if (Array.isArray(variants)) for (const d of variants) if (typeof d === 'string') this.#near?.invalidate(this.#variantPrefix(u) + d)
      return typeof n === 'number' ? n : 0
    }))
    return found.reduce((a, b) => a + b, 0)
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
    if (names === DEFAULT_NAMES) {
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

/**
 * A variant is a Redis list: its head, then its body in parts of at most PART_BYTES. The head
 * is 'SY3:', the soft-purge mark (13 digits of ms since the epoch, all zeros when not marked),
 * the expiry (13 digits, server time), then the meta. Why a list: a reply larger than a socket
 * read (64 KiB) makes ioredis's parser copy it into a shared pool that grows and is
 * reallocated (page faults, GC pressure), and every body returned as a view of that pool keeps
 * all of it alive. Parts that fit in one read come back as views of the read, and one
 * exact-size concat makes the body we keep.
 */
const HEAD_PREFIX = 'SY3:'
const STAMP = 13
const HEAD_BYTES = HEAD_PREFIX.length + 2 * STAMP
const PART_BYTES = 8192
// Lua's unpack takes a few thousand values at most: a very large body gets larger parts.
const MAX_PARTS = 4000

function bodyParts(body: Buffer): Buffer[] {
  const size = Math.max(PART_BYTES, Math.ceil(body.length / MAX_PARTS))
  const parts: Buffer[] = []
  for (let i = 0; i < body.length; i += size) parts.push(body.subarray(i, i + size))
  return parts
}

/** A stored variant and when Redis drops it (ms since the epoch). */
function toEntry(reply: unknown): { entry: CacheEntry; expiresAt: number } | undefined {
  if (!Array.isArray(reply) || reply.length === 0) return undefined
  const head = reply[0] as unknown
  if (!Buffer.isBuffer(head) || head.length < HEAD_BYTES || head.toString('latin1', 0, HEAD_PREFIX.length) !== HEAD_PREFIX) return undefined
  const meta = head.toString('utf8', HEAD_BYTES)
  // A fresh exact-size copy: never a view that keeps a socket read or parser pool alive.
  const body = Buffer.concat(reply.slice(1) as Buffer[])
  const mark = Number(head.toString('latin1', HEAD_PREFIX.length, HEAD_PREFIX.length + STAMP))
  const expiresAt = Number(head.toString('latin1', HEAD_PREFIX.length + STAMP, HEAD_BYTES))
  return { entry: mark > 0 ? { meta, body, invalidatedAt: mark } : { meta, body }, expiresAt }
}
