import { Pool as UndiciPool, type Dispatcher } from 'undici'

export interface OriginOptions {
  connectTimeoutMs: number
  maxConnections: number
  verifyTls: boolean
  /** Offer HTTP/2 by ALPN to https:// origins (the pool's `http2`). */
  http2: boolean
}

function sameOptions(a: OriginOptions, b: OriginOptions): boolean {
  return a.connectTimeoutMs === b.connectTimeoutMs && a.maxConnections === b.maxConnections && a.verifyTls === b.verifyTls && a.http2 === b.http2
}

/**
 * One keep-alive undici connection pool per upstream origin, shared by every pool that lists
 * the origin and kept across config reloads (members that stay keep their warm connections).
 *
 * A reload is a build (`ensure` for every member, the first caller's options win for an origin
 * within one build) followed by `commit` or `abort`. Options are fixed when an undici pool is
 * created (connect timeout, TLS verification, connections), so `commit` replaces the pool of an
 * origin whose options changed; the old pool finishes its in-flight requests, then closes.
 */
export class UpstreamDispatcher {
  private readonly origins = new Map<string, { pool: UndiciPool; opts: OriginOptions }>()
  /** Options claimed for each origin by the build in progress. */
  private readonly claimed = new Map<string, OriginOptions>()
  /** Origins created by the build in progress (closed again if it is aborted). */
  private readonly created = new Set<string>()
  /** Replaced pools still finishing their requests. */
  private readonly retiring = new Set<Promise<void>>()

  /** Creates the origin's connection pool if it has none yet; a changed option takes effect at commit(). */
  ensure(origin: string, opts: OriginOptions): void {
    if (!this.origins.has(origin)) {
      this.origins.set(origin, { pool: createPool(origin, opts), opts: { ...opts } })
      this.created.add(origin)
    }
    if (!this.claimed.has(origin)) this.claimed.set(origin, { ...opts })
  }

  /**
   * Ends a build: origins whose claimed options differ from their pool's get a new pool (the
   * old one drains in the background); returns those origins.
   */
  commit(): string[] {
    const rebuilt: string[] = []
    for (const [origin, opts] of this.claimed) {
      const cur = this.origins.get(origin)
      if (cur === undefined || sameOptions(cur.opts, opts)) continue
      this.origins.set(origin, { pool: createPool(origin, opts), opts })
      this.retire(cur.pool)
      rebuilt.push(origin)
    }
    this.claimed.clear()
    this.created.clear()
    return rebuilt
  }

  /** Forgets a build that will not be used: pools it created are closed, options claimed dropped. */
  async abort(): Promise<void> {
    const made = [...this.created]
    this.claimed.clear()
    this.created.clear()
    await Promise.all(made.map((origin) => {
      const cur = this.origins.get(origin)
      this.origins.delete(origin)
      return cur?.pool.close()
    }))
  }

  /** The options an origin's pool was created with (undefined when it has none). */
  optionsOf(origin: string): OriginOptions | undefined {
    const cur = this.origins.get(origin)
    return cur === undefined ? undefined : { ...cur.opts }
  }

  /** Streams one request to a member through its origin's pool (see routing/attempt-loop.ts). */
  dispatch(origin: string, opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const pool = this.origins.get(origin)?.pool
    if (pool === undefined) {
      handler.onResponseError?.(undefined as unknown as Dispatcher.DispatchController, Object.assign(new Error(`no connection pool for ${origin}`), { code: 'UND_ERR_INVALID_ARG' }))
      return false
    }
    return pool.dispatch(opts, handler)
  }

  /** A request to one member, for cache fills that tee the body themselves. */
  fetch(origin: string, req: { path: string; method: 'GET' | 'HEAD'; headers: Record<string, string | string[]>; timeoutMs: number }): Promise<Dispatcher.ResponseData> {
    const pool = this.origins.get(origin)?.pool
    if (pool === undefined) return Promise.reject(new Error(`no connection pool for ${origin}`))
    return pool.request({ path: req.path, method: req.method, headers: req.headers, headersTimeout: req.timeoutMs, bodyTimeout: req.timeoutMs })
  }

  /** Closes pools whose origin is no longer in `keep` (after a reload); they finish their requests first. */
  async retain(keep: ReadonlySet<string>): Promise<void> {
    const gone: Promise<void>[] = []
    for (const [origin, cur] of this.origins) {
      if (!keep.has(origin)) {
        this.origins.delete(origin)
        this.claimed.delete(origin)
        this.created.delete(origin)
        gone.push(cur.pool.close())
      }
    }
    await Promise.all(gone)
  }

  /** Closes every pool, including replaced ones still draining. */
  async close(): Promise<void> {
    await this.retain(new Set())
    await Promise.all([...this.retiring])
  }

  private retire(pool: UndiciPool): void {
    // close() lets queued and running requests finish, then closes the sockets.
    const p: Promise<void> = pool.close().catch(() => undefined).finally(() => { this.retiring.delete(p) })
    this.retiring.add(p)
  }
}

function createPool(origin: string, opts: OriginOptions): UndiciPool {
  return new UndiciPool(origin, {
    connections: opts.maxConnections,
    pipelining: 1,
    // Below Node's default server keepAliveTimeout (5 s) so we never reuse a socket the
    // upstream is about to close; undici also honours a Keep-Alive: timeout hint.
    keepAliveTimeout: 4000,
    keepAliveMaxTimeout: 60000,
    connect: { timeout: opts.connectTimeoutMs, rejectUnauthorized: opts.verifyTls },
    // HTTP/2 multiplexes: `connections` then bounds sessions, each carrying many streams. Only
    // set when asked: any allowH2 value (false included) costs undici's HTTP/1.1 path ~8% on /big.
    ...(opts.http2 ? { allowH2: true } : {})
  })
}
