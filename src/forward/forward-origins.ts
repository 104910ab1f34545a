/**
 * The forward proxy's origins: dynamic, so each gets a pool of one member (for the attempt loop:
 * timeouts, retries, admission) and an undici connection pool whose lookup checks the scope's
 * rules at connect time (safe-lookup.ts). Kept per scope and origin (a user whose rules allow a
 * private range must not lend those connections to one whose rules do not), in a bounded LRU;
 * origins idle for forward.origin_idle_ms are closed.
 */
import { buildConnector, Pool as UndiciPool, type Dispatcher } from 'undici'
import { Pool } from '../upstreams/pool.js'
import type { ForwardPolicy, ForwardScope } from './forward-policy.js'
import { ForwardDenied, safeLookup, type Resolver } from './safe-lookup.js'

interface Entry {
  readonly pool: Pool
  readonly undici: UndiciPool
  readonly policy: ForwardPolicy
  lastUsed: number
}

/**
 * The second line of the SSRF guard: the address the socket actually connected to passes the
 * same check as a looked-up one. The lookup is skipped for an IP literal (Node never calls it), so
 * this is what still holds if a spelling of an address ever slips past checkTarget as a name.
 */
function checkedConnector(base: buildConnector.connector, policy: ForwardPolicy, scope: ForwardScope, port: number): buildConnector.connector {
  return (opts, callback) => base(opts, (err, socket) => {
    if (err !== null) return callback(err, null)
    const d = policy.checkAddress(scope, socket.remoteAddress ?? '', port)
    if (d === undefined) return callback(null, socket)
    socket.destroy()
    callback(new ForwardDenied(d), null)
  })
}

export class ForwardOrigins {
  private readonly entries = new Map<string, Entry>()
  private readonly closing = new Set<Promise<void>>()
  private sweeper: NodeJS.Timeout | undefined
  private sweepMs = 0

  constructor(private readonly resolve: Resolver) {}

  /** Origins with a connection pool now. */
  get size(): number {
    return this.entries.size
  }

  /** The pool of `origin` (http://host:port) for `scope`, created on first use. */
  pool(policy: ForwardPolicy, scope: ForwardScope, origin: string, port: number): Pool {
    return this.entry(policy, scope, origin, port).pool
  }

  /** Sends one try through the scope's connection pool for `origin` (AttemptDeps.dispatch). */
  dispatch(scope: ForwardScope, origin: string, opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const e = this.entries.get(`${scope.key}\u0000${origin}`)
    if (e === undefined) {
      // Evicted between routing and this try (more than max_origins origins meanwhile).
      handler.onResponseError?.(undefined as unknown as Dispatcher.DispatchController, Object.assign(new Error(`no connection pool for ${origin}`), { code: 'UND_ERR_INVALID_ARG' }))
      return false
    }
    e.lastUsed = performance.now()
    return e.undici.dispatch(opts, handler)
  }

  private entry(policy: ForwardPolicy, scope: ForwardScope, origin: string, port: number): Entry {
    const key = `${scope.key}\u0000${origin}`
    let e = this.entries.get(key)
    if (e !== undefined) {
      // Most recently used last: Map keeps insertion order.
      this.entries.delete(key)
      this.entries.set(key, e)
      e.lastUsed = performance.now()
      return e
    }
    const cfg = policy.poolConfig(origin)
    e = {
      pool: new Pool(scope.partition, cfg),
      undici: new UndiciPool(origin, {
        connections: cfg.max_connections,
        pipelining: 1,
        keepAliveTimeout: 4000,
        keepAliveMaxTimeout: 60000,
        connect: checkedConnector(buildConnector({ timeout: cfg.timeouts.connect_ms, lookup: safeLookup(this.resolve, (address) => policy.checkAddress(scope, address, port)) } as never), policy, scope, port)
      }),
      policy,
      lastUsed: performance.now()
    }
    this.entries.set(key, e)
    const max = policy.config.max_origins
    for (const [k, old] of this.entries) {
      if (this.entries.size <= max) break
      this.entries.delete(k)
      this.retire(old)
    }
    this.schedule(policy.config.origin_idle_ms)
    return e
  }

  /** Closes origins unused for `idleMs` (and those of a replaced policy once idle). */
  sweep(idleMs: number, now = performance.now()): void {
    for (const [k, e] of this.entries) {
      if (now - e.lastUsed < idleMs || e.pool.members[0].inFlight > 0) continue
      this.entries.delete(k)
      this.retire(e)
    }
  }

  private schedule(idleMs: number): void {
    if (this.sweeper !== undefined && this.sweepMs === idleMs) return
    clearInterval(this.sweeper)
    this.sweepMs = idleMs
    this.sweeper = setInterval(() => this.sweep(idleMs), Math.max(500, Math.floor(idleMs / 2)))
    this.sweeper.unref()
  }

  private retire(e: Entry): void {
    // close() lets requests in flight finish, then closes the sockets.
    const p: Promise<void> = e.undici.close().catch(() => undefined).finally(() => { this.closing.delete(p) })
    this.closing.add(p)
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper)
    this.sweeper = undefined
    for (const e of this.entries.values()) this.retire(e)
    this.entries.clear()
    await Promise.all([...this.closing])
  }
}
