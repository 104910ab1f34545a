/**
 * The storage contract of the shared HTTP cache (RFC 9111). The HTTP layer decides what may be
 * stored and whether a stored response is fresh; a store only keeps bytes under keys and finds
 * the variant a request selects. Two implementations pass one contract suite
 * (test/cache/store-contract.ts): MemoryCacheStore (one process) and RedisCacheStore (shared
 * by every proxy instance).
 *
 * Layout, the same logical records in both stores (Redis names shown, P = cache.key_prefix,
 * U = URL digest, V = variant digest; {..} is a Redis Cluster hash tag, so every key of one URL
 * lives in one slot and its scripts stay atomic on a cluster):
 *
 *   P v:{U}:V       the stored response, a list: a head (the soft-purge mark, when it was
 *                   marked stale, and the meta), then the body in parts (redis-store.ts says
 *                   why); expires by itself at its TTL. V = SHA-256(url digest, Vary
 *                   names, selected values) (cache-key.ts), so a request finds its variant with
 *                   one lookup once it knows the URL's Vary names.
 *   P u:{U}         the URL's variants index: its Vary names (a URL has one current set:
 *                   storing a response with different names drops the old variants, since
 *                   RFC 9111 section 4.1 prefers the most recent response), the variant
 *                   digests with their expiry times (so "purge this URL" finds every variant
 *                   without scanning), and its host-index member. Lives as long as its
 *                   longest-lived variant.
 *   P h:{A}         the authority index (A = digest of "host[:port]" as keyed): every URL
 *                   stored for it, as "<path?query> <U>" scored by expiry time, so a prefix
 *                   purge reads one host's URLs (never the whole keyspace).
 *   P a:{N}         the host-name index (N = digest of the name without port): the
 *                   authorities stored under it, so a purge naming a host without a port
 *                   reaches every port.
 *   P t:{T}         the tag index (T = digest of a Surrogate-Key / Cache-Tag value): the URL
 *                   digests of every stored response carrying the tag.
 *
 * The indexes are trimmed of expired members on each write. Every key is P + a kind letter +
 * fixed-length hex: request bytes never reach a key name, and purges delete only keys they
 * build this way from our own index records, so a purge cannot touch a key outside P (another
 * tenant's keys in the same Redis survive).
 */
import type { CacheKey, RequestHeaders } from './cache-key.js'

/** One stored response. */
export interface CacheEntry {
  /** Serialised policy and response headers (e.g. JSON of CachePolicy.toObject()); opaque here. */
  readonly meta: string
  readonly body: Buffer
  /** On set: the tags a purge by tag finds this response by (case-sensitive, as sent). */
  readonly tags?: readonly string[]
  /** On get: when a soft purge marked it stale (ms since the epoch), if one did. */
  readonly invalidatedAt?: number
}

/** How a purge treats what it finds. */
export interface PurgeOptions {
  /**
   * Mark stale instead of deleting: the entry stays, so stale-while-revalidate and
   * stale-if-error still cover it and a validator still makes a cheap 304 revalidation.
   */
  readonly soft?: boolean
  /** The time of a soft purge (ms since the epoch; default now). */
  readonly now?: number
}

export interface CacheStoreStats {
  /** Stored responses (variants); undefined when the store cannot count cheaply (Redis). */
  entries?: number
  /** Bytes accounted to stored responses (key + meta + body). */
  bytes?: number
  /** The Redis store's in-process near cache, when it has one. */
  near?: { entries: number; bytes: number }
}

/**
 * A cache storage backend. Request-path calls (get, set, delete) never reject: a failing
 * backend behaves as an empty cache, so the proxy keeps serving from upstreams. Purges are
 * administrative and do reject, so the operator learns that stale content may remain.
 */
export interface CacheStore {
  /** The stored response this request selects (RFC 9111 section 4.1), or undefined. */
  get(key: CacheKey, requestHeaders: RequestHeaders): Promise<CacheEntry | undefined>
  /**
   * The same answer as get(), synchronously, for a store that holds entries in this process
   * (the memory store): a hit then costs no promise and no turn of the microtask queue.
   */
  getNow?(key: CacheKey, requestHeaders: RequestHeaders): CacheEntry | undefined
  /**
   * Stores a response for `ttlMs` (after which it is gone, fresh or stale: pass freshness plus
   * any stale-while-revalidate / stale-if-error window you want to keep). `vary` is the
   * response's Vary header as received; "*" or a malformed name means "not stored". Resolves
   * whether the response was stored.
   */
  set(key: CacheKey, vary: string | readonly string[] | undefined, requestHeaders: RequestHeaders, entry: CacheEntry, ttlMs: number): Promise<boolean>
  /** Drops every variant of the URL; for invalidation after unsafe methods (RFC 9111 section 4.4). */
  delete(key: CacheKey): Promise<void>
  /** Drops (or soft-purges) every variant of the URL; resolves how many stored responses it found. */
  purgeUrl(key: CacheKey, opts?: PurgeOptions): Promise<number>
  /**
   * Drops (or soft-purges) every URL of `host` whose path-and-query starts with `targetPrefix`
   * (plain string prefix: '/img/' for a directory, '/' for the whole host). `host` is compared
   * after lower-casing; with a port it names that authority only, without one every port of
   * the name. Resolves how many stored responses it found.
   */
  purgePrefix(host: string, targetPrefix: string, opts?: PurgeOptions): Promise<number>
  /**
   * Drops (or soft-purges) every URL with a stored response tagged with any of `tags`
   * (Varnish xkey, Fastly surrogate keys). Resolves how many stored responses it found.
   */
  purgeTags(tags: readonly string[], opts?: PurgeOptions): Promise<number>
  /** The authorities ("host" or "host:port") stored under a host name, for purges without a port. */
  authorities(hostname: string): Promise<string[]>
  stats(): CacheStoreStats
  /** Whether a write can succeed now (Redis connected); answers claim "stored" only then. */
  writable(): boolean
  close(): Promise<void>
}

/** The store operations, as labels for error counters and latency histograms. */
export type StoreOp = 'get' | 'set' | 'delete' | 'purge'

/**
 * Observability hooks, so stores do not depend on prom-client: wire them to a Counter
 * (`onError: (op) => errors.inc({ op })`) and a Histogram
 * (`observe: (op, s) => latency.observe({ op }, s)`).
 */
export interface StoreHooks {
  /** Called once per failed backend call. */
  onError?(op: StoreOp, err: Error): void
  /** Called once per backend round trip, with its duration in seconds, success or not. */
  observe?(op: StoreOp, seconds: number): void
  /** Near cache lookups: a hit costs no round trip; a miss found the entry in Redis and copied it. */
  near?(result: 'hit' | 'miss'): void
}
