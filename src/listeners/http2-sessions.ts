import { constants as h2, type Http2Stream, type ServerHttp2Session } from 'node:http2'
import type { Logger } from 'pino'
import type { Counter } from 'prom-client'

export interface Http2Limits {
  readonly maxResets: number
  readonly resetWindowMs: number
  /** A session with no open stream for this long is closed gracefully (GOAWAY); 0 = never. */
  readonly idleMs: number
}

export interface Http2SessionMetrics {
  /** switchyard_http2_sessions_total{listener} */
  readonly sessions: Counter<'listener'>
  /** switchyard_http2_sessions_closed_total{listener,reason} */
  readonly closed: Counter<'listener' | 'reason'>
}

const kServerReset = Symbol('switchyard.serverReset')

/** The proxy resets this stream itself (a body cut midway): not a client cancel. */
export function markServerReset(stream: Http2Stream): void {
  (stream as Http2Stream & { [kServerReset]?: boolean })[kServerReset] = true
}

interface Tracked {
  resets: number
  windowStart: number
}
const kTracked = Symbol('switchyard.h2session')
type Session = ServerHttp2Session & { [kTracked]?: Tracked }

/**
 * The HTTP/2 sessions of one listener: the rapid-reset guard (CVE-2023-44487: a client that
 * opens streams and cancels them in a loop makes us start work it never reads; past max_resets
 * cancels in reset_window_ms its session gets GOAWAY ENHANCE_YOUR_CALM and is destroyed, as
 * nginx and Envoy do), the idle timeout, and the set a graceful stop closes.
 */
export class Http2Sessions {
  readonly open = new Set<ServerHttp2Session>()
  private draining = false

  constructor(
    private readonly listener: string,
    private readonly limits: Http2Limits,
    private readonly metrics: Http2SessionMetrics,
    private readonly log: Logger
  ) {}

  /** The listener's 'session' hook. */
  readonly add = (session: ServerHttp2Session): void => {
    const s = session as Session
    s[kTracked] = { resets: 0, windowStart: performance.now() }
    this.open.add(s)
    this.metrics.sessions.labels(this.listener).inc()
    s.once('close', () => this.open.delete(s))
    // Errors on a session are the client's (protocol errors, resets): never the process's.
    s.on('error', () => {})
    s.on('stream', (stream: Http2Stream) => {
      stream.on('error', () => {})
      stream.once('aborted', () => {
        if ((stream as Http2Stream & { [kServerReset]?: boolean })[kServerReset] !== true) this.onReset(s)
      })
    })
    if (this.limits.idleMs > 0) {
      s.setTimeout(this.limits.idleMs, () => {
        this.metrics.closed.labels(this.listener, 'idle').inc()
        s.close()
      })
    }
    if (this.draining) s.close()
  }

  private onReset(s: Session): void {
    const t = s[kTracked]
    if (t === undefined || s.destroyed) return
    const now = performance.now()
    if (now - t.windowStart > this.limits.resetWindowMs) {
      t.windowStart = now
      t.resets = 0
    }
    if (++t.resets <= this.limits.maxResets) return
    this.metrics.closed.labels(this.listener, 'rapid_reset').inc()
    this.log.warn({ listener: this.listener, client: s.socket?.remoteAddress, resets: t.resets, window_ms: this.limits.resetWindowMs }, 'HTTP/2 client cancelled too many streams (rapid reset); connection closed')
    s.goaway(h2.NGHTTP2_ENHANCE_YOUR_CALM)
    s.destroy()
  }

  /** Graceful stop: GOAWAY to every session; streams in progress finish, no new ones start. */
  closeGracefully(): void {
    this.draining = true
    for (const s of this.open) {
      this.metrics.closed.labels(this.listener, 'shutdown').inc()
      s.close()
    }
  }

  destroyAll(): void {
    for (const s of this.open) s.destroy()
  }
}
