/**
 * An in-process "near cache" in front of the shared Redis store: a byte-bounded LRU whose
 * coherence comes from outside (InvalidationTracker calls invalidate()/clear()).
 *
 * LRU: one Map in recency order (a hit moves its key to the end with delete+set), so get,
 * fill and eviction are O(1): the least recently used entry is always the Map's first key.
 * An entry costs the caller's `size` plus the key's length; an entry that alone would exceed
 * maxBytes is never stored (it would evict everything and still not fit).
 *
 * Race-safe fills: a read of Redis and the invalidation of the same key travel on different
 * connections, so the invalidation may arrive before the read's reply. Storing that reply
 * would cache a value that Redis has already replaced, with no further invalidation coming.
 * So a read starts with begin(key), which returns a ticket, and its reply is stored through
 * the ticket, which refuses once an invalidate(key) or clear() happened since begin().
 *
 * Ticket scheme, and why it cannot leak: tickets of one key share a small "pending" record
 * { open, poisoned } held in one Map from key to record, created by the key's first open
 * begin() and removed again
 *  - when its last open ticket is filled or cancelled (`open` drops to 0),
 *  - by invalidate(key) or clear(), which set `poisoned` (the open tickets still hold the
 *    record, so they see it) and drop it from the Map; a later begin() starts a fresh record,
 *  - or, when the Map holds maxPending records, the oldest one is poisoned and dropped to make
 *    room. This bounds the memory of tickets that are never filled nor cancelled (a caller
 *    that forgot, or threw between begin and fill): at most maxPending records, whatever the
 *    callers do. Dropping a record only ever loses fills (the next read fills again), never
 *    stores a stale value.
 * Tickets themselves are referenced only by their caller, so an abandoned one is garbage.
 * invalidate() of a key nobody is reading costs nothing to remember: the near cache sees every
 * write in the tracked prefix across the fleet, so nothing is recorded for such keys.
 * (A global generation number with a per-key "invalidated at" map was the alternative; it
 * needs the same per-key cleanup to stay bounded, plus comparisons, for no gain.)
 */

export interface NearCacheStats {
  entries: number
  bytes: number
  /** Keys with open tickets (bounded by maxPending). */
  pending: number
}

export interface NearTicket<V> {
  /**
   * Stores the value read from the backend, unless the ticket is poisoned (an invalidate of
   * its key or a clear() happened since begin()), already used, `size` plus the key length
   * exceeds maxBytes, or `expiresAt` (in the clock of `now`) has passed. At most once.
   */
  fill(value: V, size: number, expiresAt?: number): void
  /** Ends the ticket without storing (the read missed or failed). Safe to call after fill. */
  cancel(): void
}

export interface NearCacheOptions {
  /** Bound on the sum of entry costs (size + key length). */
  maxBytes: number
  /** Clock for expiresAt (default Date.now). */
  now?: () => number
  /** Bound on keys with open tickets (default 10 000); see the file comment. */
  maxPending?: number
}

interface Entry<V> {
  value: V
  cost: number
  expiresAt: number | undefined
}

/** Shared by the open tickets of one key. */
interface Pending {
  open: number
  poisoned: boolean
}

const DEFAULT_MAX_PENDING = 10_000

export class NearCache<V> {
  readonly #maxBytes: number
  readonly #maxPending: number
  readonly #now: () => number
  /** In recency order: first = least recently used. */
  readonly #entries = new Map<string, Entry<V>>()
  /** In creation order: first = oldest, the one dropped when the Map is full. */
  readonly #pending = new Map<string, Pending>()
  #bytes = 0

  constructor(opts: NearCacheOptions) {
    if (!Number.isFinite(opts.maxBytes) || opts.maxBytes < 0) throw new RangeError(`near cache: maxBytes must be a finite number >= 0, got ${opts.maxBytes}`)
    const maxPending = opts.maxPending ?? DEFAULT_MAX_PENDING
    if (!Number.isInteger(maxPending) || maxPending < 1) throw new RangeError(`near cache: maxPending must be an integer >= 1, got ${maxPending}`)
    this.#maxBytes = opts.maxBytes
    this.#maxPending = maxPending
    this.#now = opts.now ?? Date.now
  }

  get(key: string): V | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt !== undefined && this.#now() >= entry.expiresAt) {
      this.#remove(key, entry)
      return undefined
    }
    this.#entries.delete(key)
    this.#entries.set(key, entry)
    return entry.value
  }

  begin(key: string): NearTicket<V> {
    let record = this.#pending.get(key)
    if (record === undefined) {
      if (this.#pending.size >= this.#maxPending) this.#dropOldestPending()
      record = { open: 0, poisoned: false }
      this.#pending.set(key, record)
    }
    record.open++
    const pending = record
    let done = false
    // Ends the ticket once; true if the caller may still store (not poisoned).
    const finish = (): boolean => {
      if (done) return false
      done = true
      pending.open--
      if (pending.open === 0 && this.#pending.get(key) === pending) this.#pending.delete(key)
      return !pending.poisoned
    }
    return {
      fill: (value, size, expiresAt) => {
        if (finish()) this.#store(key, value, size, expiresAt)
      },
      cancel: () => { finish() }
    }
  }

  invalidate(key: string): void {
    const entry = this.#entries.get(key)
    if (entry !== undefined) this.#remove(key, entry)
    const record = this.#pending.get(key)
    if (record !== undefined) {
      record.poisoned = true
      this.#pending.delete(key)
    }
  }

  clear(): void {
    this.#entries.clear()
    this.#bytes = 0
    for (const record of this.#pending.values()) record.poisoned = true
    this.#pending.clear()
  }

  stats(): NearCacheStats {
    return { entries: this.#entries.size, bytes: this.#bytes, pending: this.#pending.size }
  }

  #store(key: string, value: V, size: number, expiresAt: number | undefined): void {
    const cost = size + key.length
    // `!(x <= y)` also refuses NaN sizes.
    if (!(size >= 0) || !(cost <= this.#maxBytes)) return
    if (expiresAt !== undefined && !(this.#now() < expiresAt)) return
    const old = this.#entries.get(key)
    if (old !== undefined) this.#remove(key, old)
    this.#entries.set(key, { value, cost, expiresAt })
    this.#bytes += cost
    // The new entry is last and fits alone, so this stops before reaching it.
    while (this.#bytes > this.#maxBytes) {
      const lru = this.#entries.entries().next()
      if (lru.done === true) break
      this.#remove(lru.value[0], lru.value[1])
    }
  }

  #remove(key: string, entry: Entry<V>): void {
    this.#entries.delete(key)
    this.#bytes -= entry.cost
  }

  #dropOldestPending(): void {
    const oldest = this.#pending.entries().next()
    if (oldest.done === true) return
    oldest.value[1].poisoned = true
    this.#pending.delete(oldest.value[0])
  }
}
