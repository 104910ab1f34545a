/**
 * The in-process CacheStore: one proxy process, no shared state. Same records as the Redis
 * layout (store.ts), held in Maps. Bounded in bytes, not entries, because bodies range from a
 * few bytes to route.cache.max_entry_bytes and an entry count bounds nothing useful.
 *
 * LRU: a Map iterates in insertion order, so deleting and re-inserting an entry on each hit
 * makes the first key the least recently used one (O(1) per operation, no linked list).
 * Expiry is lazy (checked on get; expired entries otherwise age out through the LRU), so there
 * is no timer per entry.
 */
import { hasPort, hostnameOf, normalizeHost, parseVary, variantDigest, type CacheKey, type RequestHeaders, type VaryNames } from './cache-key.js'
import type { CacheEntry, CacheStore, CacheStoreStats, PurgeOptions } from './store.js'

export interface MemoryStoreOptions {
  /** Upper bound of key + meta + body bytes held (cache.max_bytes). */
  maxBytes: number
  /** Milliseconds clock; injectable so tests control expiry without sleeping. */
  now?: () => number
}

interface StoredEntry {
  readonly urlDigest: string
  readonly meta: string
  readonly body: Buffer
  readonly expiresAt: number
  readonly size: number
  /** Set by a soft purge. */
  invalidatedAt?: number
}

/** A URL's variants index: its current Vary names and the variants stored under them. */
interface UrlRecord {
  readonly key: CacheKey
  readonly names: VaryNames
  readonly variants: Set<string>
  /** Tags of any of its stored responses. */
  readonly tags: Set<string>
}

export class MemoryCacheStore implements CacheStore {
  readonly #maxBytes: number
  readonly #now: () => number
  /** Variant digest -> entry, in LRU order (first = least recently used). */
  readonly #entries = new Map<string, StoredEntry>()
  /** URL digest -> variants index. */
  readonly #urls = new Map<string, UrlRecord>()
  /** Authority -> digests of its URLs, for prefix purges. */
  readonly #hosts = new Map<string, Set<string>>()
  /** Tag -> digests of the URLs with a response carrying it. */
  readonly #tags = new Map<string, Set<string>>()
  #bytes = 0

  constructor(opts: MemoryStoreOptions) {
    this.#maxBytes = opts.maxBytes
    this.#now = opts.now ?? Date.now
  }

  async get(key: CacheKey, requestHeaders: RequestHeaders): Promise<CacheEntry | undefined> {
    return this.getNow(key, requestHeaders)
  }

  getNow(key: CacheKey, requestHeaders: RequestHeaders): CacheEntry | undefined {
    const rec = this.#urls.get(key.digest)
    if (rec === undefined) return undefined
    const vd = variantDigest(key, rec.names, requestHeaders)
    const e = this.#entries.get(vd)
    if (e === undefined) return undefined
    if (e.expiresAt <= this.#now()) {
      this.#remove(vd)
      return undefined
    }
    this.#entries.delete(vd)
    this.#entries.set(vd, e)
    return e.invalidatedAt === undefined ? { meta: e.meta, body: e.body } : { meta: e.meta, body: e.body, invalidatedAt: e.invalidatedAt }
  }

  async set(key: CacheKey, vary: string | readonly string[] | undefined, requestHeaders: RequestHeaders, entry: CacheEntry, ttlMs: number): Promise<boolean> {
    const names = parseVary(vary)
    if (names === undefined || !(ttlMs > 0)) return false
    const old = this.#urls.get(key.digest)
    // The origin now varies on other fields: drop the old variants (RFC 9111 section 4.1
    // prefers the most recent response; the old ones would only shadow it).
    if (old !== undefined && old.names !== names) this.#removeUrl(old)
    const vd = variantDigest(key, names, requestHeaders)
    this.#remove(vd)
    const size = vd.length + Buffer.byteLength(entry.meta) + entry.body.byteLength
    if (size > this.#maxBytes) return false
    let rec = this.#urls.get(key.digest)
    if (rec === undefined) {
      rec = { key, names, variants: new Set(), tags: new Set() }
      this.#urls.set(key.digest, rec)
      let urls = this.#hosts.get(key.host)
      if (urls === undefined) this.#hosts.set(key.host, (urls = new Set()))
      urls.add(key.digest)
    }
    rec.variants.add(vd)
    for (const tag of entry.tags ?? []) {
      rec.tags.add(tag)
      let urls = this.#tags.get(tag)
      if (urls === undefined) this.#tags.set(tag, (urls = new Set()))
      urls.add(key.digest)
    }
    this.#entries.set(vd, { urlDigest: key.digest, meta: entry.meta, body: entry.body, expiresAt: this.#now() + ttlMs, size })
    this.#bytes += size
    while (this.#bytes > this.#maxBytes) {
      const oldest = this.#entries.keys().next()
      if (oldest.done === true) break
      this.#remove(oldest.value)
    }
    return true
  }

  async delete(key: CacheKey): Promise<void> {
    await this.purgeUrl(key)
  }

  async purgeUrl(key: CacheKey, opts: PurgeOptions = {}): Promise<number> {
    const rec = this.#urls.get(key.digest)
    return rec === undefined ? 0 : this.#purgeUrl(rec, opts)
  }

  async purgePrefix(host: string, targetPrefix: string, opts: PurgeOptions = {}): Promise<number> {
    let removed = 0
    for (const authority of this.#authoritiesOf(normalizeHost(host))) {
      for (const digest of [...(this.#hosts.get(authority) ?? [])]) {
        const rec = this.#urls.get(digest)
        if (rec !== undefined && rec.key.target.startsWith(targetPrefix)) removed += this.#purgeUrl(rec, opts)
      }
    }
    return removed
  }

  async purgeTags(tags: readonly string[], opts: PurgeOptions = {}): Promise<number> {
    let removed = 0
    for (const tag of tags) {
      for (const digest of [...(this.#tags.get(tag) ?? [])]) {
        const rec = this.#urls.get(digest)
        if (rec !== undefined) removed += this.#purgeUrl(rec, opts)
      }
      if (opts.soft !== true) this.#tags.delete(tag)
    }
    return removed
  }

  async authorities(hostname: string): Promise<string[]> {
    return this.#authoritiesOf(normalizeHost(hostname))
  }

  writable(): boolean {
    return true
  }

  stats(): CacheStoreStats {
    return { entries: this.#entries.size, bytes: this.#bytes }
  }

  async close(): Promise<void> {
    this.#entries.clear()
    this.#urls.clear()
    this.#hosts.clear()
    this.#tags.clear()
    this.#bytes = 0
  }

  /** An authority as given, or every stored authority of a host name given without port. */
  #authoritiesOf(host: string): string[] {
    if (hasPort(host)) return [host]
    return [...this.#hosts.keys()].filter((a) => hostnameOf(a) === host)
  }

  /** Removes, or marks stale, every variant of a URL; returns how many unexpired ones there were. */
  #purgeUrl(rec: UrlRecord, opts: PurgeOptions): number {
    if (opts.soft !== true) return this.#removeUrl(rec)
    const now = this.#now()
    const at = opts.now ?? Date.now()
    let live = 0
    for (const vd of rec.variants) {
      const e = this.#entries.get(vd)
      if (e === undefined || e.expiresAt <= now) continue
      e.invalidatedAt = at
      live++
    }
    return live
  }

  /** Removes every variant of a URL; returns how many unexpired ones there were. */
  #removeUrl(rec: UrlRecord): number {
    const now = this.#now()
    let live = 0
    for (const vd of [...rec.variants]) {
      const e = this.#entries.get(vd)
      if (e !== undefined && e.expiresAt > now) live++
      this.#remove(vd)
    }
    return live
  }

  /** Removes one variant and, with its last variant, the URL from the indexes. */
  #remove(vd: string): void {
    const e = this.#entries.get(vd)
    if (e === undefined) return
    this.#entries.delete(vd)
    this.#bytes -= e.size
    const rec = this.#urls.get(e.urlDigest)
    if (rec === undefined) return
    rec.variants.delete(vd)
    if (rec.variants.size > 0) return
    this.#urls.delete(e.urlDigest)
    for (const tag of rec.tags) {
      const tagged = this.#tags.get(tag)
      tagged?.delete(e.urlDigest)
      if (tagged?.size === 0) this.#tags.delete(tag)
    }
    const urls = this.#hosts.get(rec.key.host)
    urls?.delete(e.urlDigest)
    if (urls?.size === 0) this.#hosts.delete(rec.key.host)
  }
}
