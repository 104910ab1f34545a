/**
 * Keeps a near cache coherent with Redis through server-assisted client-side caching
 * (CLIENT TRACKING) in BCAST mode: Redis reports every change of a key under the tracked
 * prefixes (a write or delete by any client, an expiry, an eviction), with no per-key memory
 * on the server.
 *
 * ioredis 5 speaks RESP2, where tracking messages cannot share a connection with replies, so
 * they are redirected to a connection subscribed to __redis__:invalidate. That connection may
 * be the tracking one itself (checked on Redis 7.0: CLIENT TRACKING ON REDIRECT <own id>,
 * then SUBSCRIBE; in RESP2 a subscribed connection may only (un)subscribe, ping and quit, so
 * tracking is switched on first). One connection per master therefore suffices, and it is
 * also the safer shape: with two, the subscriber could die while the tracking connection
 * lives on, silently redirecting into the void (RESP2 gets no tracking-redir-broken notice);
 * with one, tracking and delivery live and die together. Invalidations sent between
 * CLIENT TRACKING and SUBSCRIBE are lost, which is why a master counts as tracked only once
 * SUBSCRIBE has answered.
 *
 * Coherence contract with the near cache:
 *  - the near cache may serve, and may begin() fills, only while active() is true;
 *  - every event after which tracking may have been lost calls handlers.flush(reason) before
 *    active() can be true again: a connection closing (Redis restart, network loss, Sentinel
 *    failover, whose reconfiguration kills the old master's clients), a FLUSHALL/FLUSHDB (null
 *    payload), a Redis Cluster slot map or master set change, close();
 *  - reconnecting re-runs CLIENT ID / CLIENT TRACKING / SUBSCRIBE by itself (ioredis's
 *    autoResubscribe is off: it would SUBSCRIBE before tracking could be switched on).
 *
 * Liveness: an idle subscriber connection may be dropped silently on the way (NAT, firewall),
 * so every checkIntervalMs each tracked connection sends a PING; ioredis's socketTimeout (see
 * redis-connection.ts) destroys a connection whose pending command gets no data, which is a
 * close, hence a flush and a reconnect.
 *
 * Redis Cluster: one connection per master, opened by this module with the URL's credentials
 * and TLS. The masters are those of the slot map of an ioredis Cluster client (plus its
 * nodes('master')). ioredis 5 refreshes its slot map only on MOVED/errors (slotsRefreshInterval
 * is off by default and createRedisClient leaves it so), so every checkIntervalMs CLUSTER
 * SLOTS is asked through the pooled connections (no new connection) and compared with the
 * map; a difference triggers refreshSlotsCache, whose 'refresh' resyncs the masters. A slot
 * that moves to a master not yet tracked can thus go unobserved for up to checkIntervalMs
 * (writes to it are missed until the flush that follows the detection).
 *
 * Tracking covers the whole server, not one database: a key of another database with a
 * tracked prefix also invalidates (harmless, only a miss).
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import type { Logger } from 'pino'
import { clusterNodesFromUrl, createRedisClient, isClusterUrl, reconnectDelay, type ConnectionPolicy } from './redis-connection.js'

export interface TrackerOptions {
  /** Same URL the store uses: redis://, rediss://, redis+sentinel://, redis+cluster://. */
  url: string
  /** Key prefixes to track (overlaps are folded: 'a' covers 'ab'; '' tracks every key). */
  prefixes: string[]
  policy: ConnectionPolicy
  logger: Logger
  /** Period of the heartbeat PINGs and of the cluster topology check (default 1000 ms). */
  checkIntervalMs?: number
  /** At most one log line per kind of event per this many ms (default 10 s). */
  logIntervalMs?: number
}

/** Why handlers.flush was called (a short, fixed vocabulary, fit for a metric label). */
export type FlushReason = 'flushall' | 'connection-lost' | 'topology-changed' | 'handler-failed' | 'closed'

export interface TrackerHandlers {
  /** Keys changed in Redis (UTF-8 decoded names). */
  invalidate(keys: string[]): void
  /** Anything may have changed: drop everything. */
  flush(reason: FlushReason): void
}

const CHANNEL = '__redis__:invalidate'
const CLUSTER_SLOTS = 16384

type LogKind = 'connection' | 'setup' | 'lost' | 'established' | 'topology' | 'handler'

/** One log line per kind per interval, with the count of the lines it stands for. */
class LogLimiter {
  readonly #logger: Logger
  readonly #intervalMs: number
  readonly #last = new Map<LogKind, { at: number; suppressed: number }>()

  constructor(logger: Logger, intervalMs: number) {
    this.#logger = logger
    this.#intervalMs = intervalMs
  }

  log(level: 'info' | 'warn' | 'error', kind: LogKind, fields: Record<string, unknown>, msg: string): void {
    const now = Date.now()
    const last = this.#last.get(kind)
    if (last !== undefined && now - last.at < this.#intervalMs) {
      last.suppressed++
      return
    }
    this.#logger[level]({ ...fields, suppressed: last?.suppressed ?? 0 }, msg)
    this.#last.set(kind, { at: now, suppressed: 0 })
  }
}

/** What a MasterLink tells its tracker. */
interface LinkEvents {
  tracking(link: MasterLink): void
  lost(link: MasterLink, why: string): void
  message(channel: Buffer, payload: unknown): void
  problem(kind: LogKind, address: string, err: unknown): void
}

/** The one connection to one master that tracks and receives invalidations. */
class MasterLink {
  readonly address: string
  readonly #conn: Redis
  readonly #trackArgs: string[]
  readonly #events: LinkEvents
  readonly #maxDelayMs: number
  #tracking = false
  /** Bumped by every ready/close, so a setup of an older connection does not conclude. */
  #epoch = 0
  #failures = 0
  #retry: NodeJS.Timeout | undefined
  #closed = false

  constructor(address: string, conn: Redis, trackArgs: string[], maxDelayMs: number, events: LinkEvents) {
    this.address = address
    this.#conn = conn
    this.#trackArgs = trackArgs
    this.#maxDelayMs = maxDelayMs
    this.#events = events
    conn.on('ready', () => { void this.#establish() })
    conn.on('close', () => this.#down('connection closed'))
    // Without an 'error' listener ioredis prints every reconnect failure to stderr.
    conn.on('error', (err: unknown) => { if (!this.#closed) events.problem('connection', address, err) })
    conn.on('messageBuffer', (channel: Buffer, payload: unknown) => { if (!this.#closed) events.message(channel, payload) })
  }

  get tracking(): boolean {
    return this.#tracking
  }

  /** Gives a silently dead connection a pending command, so socketTimeout can notice. */
  heartbeat(): void {
    if (this.#tracking && this.#conn.status === 'ready') this.#conn.ping().catch(() => {})
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#tracking = false
    this.#epoch++
    clearTimeout(this.#retry)
    if (this.#conn.status === 'ready') {
      try {
        await this.#conn.quit()
      } catch {
        // Gone meanwhile: disconnect below is all that is left to do.
      }
    }
    this.#conn.disconnect(false)
  }

  async #establish(): Promise<void> {
    const epoch = ++this.#epoch
    const conn = this.#conn
    try {
      const id = await conn.client('ID')
      if (epoch !== this.#epoch) return
      await conn.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(id), 'BCAST', ...this.#trackArgs)
      if (epoch !== this.#epoch) return
      await conn.subscribe(CHANNEL)
      if (epoch !== this.#epoch) return
      this.#failures = 0
      this.#tracking = true
      this.#events.tracking(this)
    } catch (err) {
      // A connection that closed meanwhile gets a new 'ready' (and setup) when it is back.
      if (epoch !== this.#epoch || this.#closed) return
      this.#events.problem('setup', this.address, err)
      // E.g. Redis < 6 or an ACL without CLIENT: retry on a fresh connection with backoff
      // ('ready' resets ioredis's own attempt count, so its delay alone would not grow).
      clearTimeout(this.#retry)
      this.#retry = setTimeout(() => {
        this.#retry = undefined
        if (!this.#closed && epoch === this.#epoch) conn.disconnect(true)
      }, reconnectDelay(++this.#failures, this.#maxDelayMs))
      this.#retry.unref()
    }
  }

  #down(why: string): void {
    this.#epoch++
    clearTimeout(this.#retry)
    this.#retry = undefined
    if (!this.#tracking || this.#closed) return
    this.#tracking = false
    this.#events.lost(this, why)
  }
}

/**
 * The prefixes as CLIENT TRACKING arguments. Redis refuses overlapping prefixes, so a prefix
 * covered by a shorter one is dropped; '' (every key) means BCAST without PREFIX.
 */
export function trackingArgs(prefixes: readonly string[]): string[] {
  if (prefixes.length === 0) throw new Error('invalidation tracker: no prefixes to track (use [\'\'] for every key)')
  const kept: string[] = []
  for (const p of [...new Set(prefixes)].sort((a, b) => a.length - b.length)) {
    if (p === '') return []
    if (!kept.some((k) => p.startsWith(k))) kept.push(p)
  }
  return kept.flatMap((p) => ['PREFIX', p])
}

/** Slot ranges with their master ("0-5460=host:port,..."): equal strings, same topology. */
function slotMapFingerprint(masterOf: (slot: number) => string | undefined): string {
  const ranges: string[] = []
  let start = 0
  let current = masterOf(0)
  for (let s = 1; s <= CLUSTER_SLOTS; s++) {
    const m = s < CLUSTER_SLOTS ? masterOf(s) : undefined
    if (s < CLUSTER_SLOTS && m === current) continue
    if (current !== undefined) ranges.push(`${start}-${s - 1}=${current}`)
    start = s
    current = m
  }
  return ranges.join(',')
}

/** Slot -> master "host:port" from a CLUSTER SLOTS reply (malformed entries are skipped). */
function slotMasters(reply: unknown): (string | undefined)[] {
  const out = new Array<string | undefined>(CLUSTER_SLOTS).fill(undefined)
  if (!Array.isArray(reply)) return out
  for (const range of reply as unknown[]) {
    if (!Array.isArray(range)) continue
    const [from, to, master] = range as unknown[]
    if (typeof from !== 'number' || typeof to !== 'number' || !Array.isArray(master)) continue
    const [host, port] = master as unknown[]
    if (typeof host !== 'string' || host === '' || typeof port !== 'number') continue
    for (let s = Math.max(0, from); s <= Math.min(CLUSTER_SLOTS - 1, to); s++) out[s] = `${host}:${port}`
  }
  return out
}

/** redis://host:port for a cluster node key "host:port" (IPv6 hosts get brackets). */
function nodeUrl(key: string): string {
  const colon = key.lastIndexOf(':')
  const host = key.slice(0, colon)
  return `redis://${host.includes(':') ? `[${host}]` : host}:${key.slice(colon + 1)}`
}

export class InvalidationTracker {
  readonly #handlers: TrackerHandlers
  readonly #policy: ConnectionPolicy
  readonly #trackArgs: string[]
  readonly #log: LogLimiter
  readonly #links = new Map<string, MasterLink>()
  readonly #events: LinkEvents
  /** Topology source of a cluster URL; undefined for standalone and Sentinel. */
  readonly #cluster: Cluster | undefined
  /** Credentials and TLS of a cluster URL, for the per-master connections. */
  readonly #nodeOptions: RedisOptions = {}
  /** Slot map fingerprint the links were last synced to ('' before the first). */
  #topology = ''
  readonly #timer: NodeJS.Timeout
  readonly #waiters = new Set<(ok: boolean) => void>()
  #closed = false

  constructor(opts: TrackerOptions, handlers: TrackerHandlers) {
    this.#handlers = handlers
    this.#policy = opts.policy
    this.#trackArgs = trackingArgs(opts.prefixes)
    this.#log = new LogLimiter(opts.logger, opts.logIntervalMs ?? 10_000)
    this.#events = {
      tracking: (link) => this.#onTracking(link),
      lost: (link, why) => this.#onLost(link, why),
      message: (channel, payload) => this.#onMessage(channel, payload),
      problem: (kind, address, err) => this.#log.log('warn', kind, { err, node: address }, kind === 'setup'
        ? 'invalidation tracker: could not switch on CLIENT TRACKING; retrying, the near cache is bypassed meanwhile'
        : 'invalidation tracker: redis connection error')
    }
    if (isClusterUrl(opts.url)) {
      this.#nodeOptions = clusterNodesFromUrl(opts.url).options
      const cluster = createRedisClient(opts.url, opts.policy)
      if (!(cluster instanceof Cluster)) throw new Error('invalidation tracker: expected a cluster client')
      this.#cluster = cluster
      const sync = (): void => this.#guard(() => this.#syncTopology())
      for (const ev of ['ready', 'refresh', '+node', '-node']) cluster.on(ev, sync)
      cluster.on('error', (err: unknown) => { if (!this.#closed) this.#events.problem('connection', 'cluster', err) })
    } else {
      const conn = createRedisClient(opts.url, opts.policy, { autoResubscribe: false })
      if (!(conn instanceof Redis)) throw new Error('invalidation tracker: expected a standalone client')
      this.#links.set('master', new MasterLink('master', conn, this.#trackArgs, opts.policy.maxReconnectDelayMs, this.#events))
    }
    this.#timer = setInterval(() => this.#guard(() => this.#tick()), opts.checkIntervalMs ?? 1000)
    this.#timer.unref()
  }

  /** True only while tracking is established on every master: the near cache may serve only then. */
  active(): boolean {
    if (this.#closed || this.#links.size === 0) return false
    if (this.#cluster !== undefined && (this.#cluster.status !== 'ready' || this.#topology === '')) return false
    for (const link of this.#links.values()) if (!link.tracking) return false
    return true
  }

  /** Resolves true once active (false after timeoutMs or on close); the tracker keeps trying by itself. */
  async ready(timeoutMs: number): Promise<boolean> {
    if (this.active()) return true
    if (this.#closed) return false
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer)
        this.#waiters.delete(done)
        resolve(ok)
      }
      const timer = setTimeout(() => done(false), timeoutMs)
      this.#waiters.add(done)
    })
  }

  /** Closes every connection and timer; flushes if anything was tracked. */
  async close(): Promise<void> {
    if (this.#closed) return
    const wasTracking = [...this.#links.values()].some((l) => l.tracking)
    this.#closed = true
    clearInterval(this.#timer)
    for (const done of [...this.#waiters]) done(false)
    const links = [...this.#links.values()]
    this.#links.clear()
    if (wasTracking) this.#flush('closed')
    await Promise.all(links.map((l) => l.close()))
    const cluster = this.#cluster
    if (cluster !== undefined) {
      if (cluster.status === 'ready') {
        try {
          await cluster.quit()
        } catch {
          // Gone meanwhile: disconnect below is all that is left to do.
        }
      }
      cluster.disconnect(false)
    }
  }

  #onTracking(link: MasterLink): void {
    this.#log.log('info', 'established', { node: link.address }, 'invalidation tracker: tracking established')
    this.#update()
  }

  #onLost(link: MasterLink, why: string): void {
    this.#log.log('warn', 'lost', { node: link.address, why }, 'invalidation tracker: tracking lost; near cache flushed and bypassed until it is back')
    this.#flush('connection-lost')
    this.#update()
  }

  #onMessage(channel: Buffer, payload: unknown): void {
    if (channel.toString() !== CHANNEL) return
    // A null payload: FLUSHALL/FLUSHDB, or the server could not keep tracking.
    if (payload == null) {
      this.#flush('flushall')
      return
    }
    const names = Array.isArray(payload) ? (payload as unknown[]) : [payload]
    const keys = names.map((k) => (Buffer.isBuffer(k) ? k.toString('utf8') : String(k)))
    try {
      this.#handlers.invalidate(keys)
    } catch (err) {
      // A lost invalidation would leave a stale entry: drop everything instead.
      this.#log.log('error', 'handler', { err }, 'invalidation tracker: invalidate handler threw; flushing')
      this.#flush('handler-failed')
    }
  }

  #flush(reason: FlushReason): void {
    try {
      this.#handlers.flush(reason)
    } catch (err) {
      this.#log.log('error', 'handler', { err, reason }, 'invalidation tracker: flush handler threw')
    }
  }

  /** Resolves ready() waiters once active. */
  #update(): void {
    if (this.#waiters.size === 0 || !this.active()) return
    for (const done of [...this.#waiters]) done(true)
  }

  #tick(): void {
    if (this.#closed) return
    for (const link of this.#links.values()) link.heartbeat()
    const cluster = this.#cluster
    if (cluster === undefined || cluster.status !== 'ready') return
    // Through the pooled connections; a failure just waits for the next tick.
    cluster.cluster('SLOTS').then((reply) => this.#guard(() => {
      if (this.#closed) return
      const masters = slotMasters(reply)
      if (slotMapFingerprint((s) => masters[s]) !== this.#topology) cluster.refreshSlotsCache()
    }), () => {})
  }

  /** Matches the links to the cluster's masters; a changed slot map or master set flushes. */
  #syncTopology(): void {
    const cluster = this.#cluster
    if (this.#closed || cluster === undefined) return
    const slots = cluster.slots
    const fingerprint = slotMapFingerprint((s) => slots[s]?.[0])
    if (fingerprint === '') return // no slot map yet
    const wanted = new Set<string>()
    for (const nodes of slots) if (nodes?.[0] !== undefined) wanted.add(nodes[0])
    for (const node of cluster.nodes('master')) wanted.add(`${node.options.host}:${node.options.port}`)
    const membersChanged = wanted.size !== this.#links.size || [...wanted].some((k) => !this.#links.has(k))
    if (this.#topology !== '' && (fingerprint !== this.#topology || membersChanged)) {
      this.#log.log('info', 'topology', { masters: [...wanted] }, 'invalidation tracker: cluster topology changed; near cache flushed')
      this.#flush('topology-changed')
    }
    this.#topology = fingerprint
    for (const [key, link] of this.#links) {
      if (wanted.has(key)) continue
      this.#links.delete(key)
      void link.close()
    }
    for (const key of wanted) {
      if (this.#links.has(key)) continue
      const conn = createRedisClient(nodeUrl(key), this.#policy, { ...this.#nodeOptions, autoResubscribe: false })
      if (!(conn instanceof Redis)) continue
      this.#links.set(key, new MasterLink(key, conn, this.#trackArgs, this.#policy.maxReconnectDelayMs, this.#events))
    }
    this.#update()
  }

  /** Event handlers must never throw into ioredis (or crash the process). */
  #guard(fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.#log.log('error', 'handler', { err }, 'invalidation tracker: internal error in an event handler')
    }
  }
}
