/**
 * The storage contract of the shared HTTP cache (RFC 9111). The HTTP layer decides what may be
 * stored and whether a stored response is fresh; a store only keeps bytes under keys and finds
 * the variant a request selects. Two implementations pass one contract suite
 * (test/cache/store-contract.ts): MemoryCacheStore (one process) and RedisCacheStore (shared
 * by every proxy instance).
 *
 * Layout, the same logical records in both stores (Redis names shown, P = cache.key_prefix):
 *
 *   P v:<variantDigest>  the stored response: meta + body; expires by itself at its TTL.
 *                        variantDigest = SHA-256(url digest, Vary names, selected values)
 *                        (cache-key.ts), so a request finds its variant with one lookup once
 *                        it knows the URL's Vary names.
 *   P u:<urlDigest>      the URL's variants index: its Vary names (a URL has one current set:
 *                        storing a response with different names drops the old variants, since
 *                        RFC 9111 section 4.1 prefers the most recent response), the variant
 *                        digests with their expiry times (so "purge this URL" finds every
 *                        variant without scanning), and its host-index member. Lives as long
 *                        as its longest-lived variant.
 *   P h:<hostDigest>     the host index: every URL stored for a host, as "<path?query> <digest>"
 *                        scored by expiry time, so a prefix purge reads one host's URLs (never
 *                        the whole keyspace) and expired members are trimmed on each write.
 *
 * Every key is P + a kind letter + fixed-length hex: request bytes never reach a key name, and
 * purges delete only keys they build this way from our own index records, so a purge cannot
 * touch a key outside P (another tenant's keys in the same Redis survive).
 */
import type { CacheKey, RequestHeaders } from './cache-key.js'

/** One stored response. */
export interface CacheEntry {
  /** Serialised policy and response headers (e.g. JSON of CachePolicy.toObject()); opaque here. */
  readonly meta: string
  readonly body: Buffer
}

export interface CacheStoreStats {
  /** Stored responses (variants); undefined when the store cannot count cheaply (Redis). */
  entries?: number
  /** Bytes accounted to stored responses (key + meta + body). */
  bytes?: number
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
   * Stores a response for `ttlMs` (after which it is gone, fresh or stale: pass freshness plus
   * any stale-while-revalidate / stale-if-error window you want to keep). `vary` is the
   * response's Vary header as received; "*" or a malformed name means "not stored". Resolves
   * whether the response was stored.
   */
  set(key: CacheKey, vary: string | readonly string[] | undefined, requestHeaders: RequestHeaders, entry: CacheEntry, ttlMs: number): Promise<boolean>
  /** Drops every variant of the URL; for invalidation after unsafe methods (RFC 9111 section 4.4). */
  delete(key: CacheKey): Promise<void>
  /** Drops every variant of the URL; resolves how many stored responses were removed. */
  purgeUrl(key: CacheKey): Promise<number>
  /**
   * Drops every URL of `host` whose path-and-query starts with `targetPrefix` (plain string
   * prefix: '/img/' for a directory, '/' for the whole host). Resolves how many stored
   * responses were removed. `host` is compared after lower-casing; pass it without a default port.
   */
  purgePrefix(host: string, targetPrefix: string): Promise<number>
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
}
