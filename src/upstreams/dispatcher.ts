import { Pool as UndiciPool, type Dispatcher } from 'undici'

export interface OriginOptions {
  connectTimeoutMs: number
  maxConnections: number
  verifyTls: boolean
}

/**
 * One keep-alive undici connection pool per upstream origin, shared by every pool that lists
 * the origin and kept across config reloads (members that stay keep their warm connections).
 */
export class UpstreamDispatcher {
  private readonly origins = new Map<string, UndiciPool>()

  /** Creates the origin's connection pool if it has none yet; the first caller's options win. */
  ensure(origin: string, opts: OriginOptions): void {
    if (this.origins.has(origin)) return
    this.origins.set(origin, new UndiciPool(origin, {
      connections: opts.maxConnections,
      pipelining: 1,
      // Below Node's default server keepAliveTimeout (5 s) so we never reuse a socket the
      // upstream is about to close; undici also honours a Keep-Alive: timeout hint.
      keepAliveTimeout: 4000,
      keepAliveMaxTimeout: 60000,
      connect: { timeout: opts.connectTimeoutMs, rejectUnauthorized: opts.verifyTls }
    }))
  }

  /** Streams one request to a member through its origin's pool (see routing/forwarder.ts). */
  dispatch(origin: string, opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const pool = this.origins.get(origin)
    if (pool === undefined) {
      handler.onResponseError?.(undefined as unknown as Dispatcher.DispatchController, Object.assign(new Error(`no connection pool for ${origin}`), { code: 'UND_ERR_INVALID_ARG' }))
      return false
    }
    return pool.dispatch(opts, handler)
  }

  /** A request to one member, for cache fills that tee the body themselves. */
  fetch(origin: string, req: { path: string; method: 'GET' | 'HEAD'; headers: Record<string, string | string[]>; timeoutMs: number }): Promise<Dispatcher.ResponseData> {
    const pool = this.origins.get(origin)
    if (pool === undefined) return Promise.reject(new Error(`no connection pool for ${origin}`))
    return pool.request({ path: req.path, method: req.method, headers: req.headers, headersTimeout: req.timeoutMs, bodyTimeout: req.timeoutMs })
  }

  /** Closes pools whose origin is no longer in `keep` (after a reload). */
  async retain(keep: ReadonlySet<string>): Promise<void> {
    const gone: Promise<void>[] = []
    for (const [origin, pool] of this.origins) {
      if (!keep.has(origin)) {
        this.origins.delete(origin)
        gone.push(pool.close())
      }
    }
    await Promise.all(gone)
  }

  async close(): Promise<void> {
    await this.retain(new Set())
  }
}
