import type { Server as HttpServer, ServerResponse } from 'node:http'
import { Server as NetServer, type Socket } from 'node:net'
import { realClock, type Clock } from '../clock.js'
import type { Http2Sessions } from '../listeners/http2-sessions.js'
import type { ListenerServer } from '../listeners/listener-server.js'

/** Listener servers whose drain has begun (read by the upgrade listener, which runs outside Fastify). */
const DRAINING = new WeakSet<object>()

/** Whether `server`'s drain has begun: a new long-lived tunnel must not be opened on it. */
export function isDraining(server: object): boolean {
  return DRAINING.has(server)
}

export interface DrainResult {
  /** Connections still open at the deadline, closed by force. */
  forced: number
}

/**
 * A graceful stop for an HTTP listener that never makes a client's request fail:
 * - it stops accepting (the listening socket closes; in a cluster worker the primary stops
 *   handing it connections and gives those in transit to another worker);
 * - every response not yet started, and every request arriving on a kept-alive connection,
 *   is answered normally with `Connection: close`, so the client knows to open its next
 *   connection elsewhere;
 * - idle kept-alive connections are NOT closed (http.Server.close() would, and a client may be
 *   sending a request on one at that very moment: a reset). They end when their next answer
 *   carries `Connection: close` or when the keep-alive timeout the client was told about
 *   (`Keep-Alive: timeout=N`) expires;
 * - nothing answers 503 (Fastify's return503OnClosing only applies once fastify.close() runs,
 *   which the owner calls after the drain).
 * At the deadline the connections left are closed by force.
 */
export class ConnectionDrain {
  private readonly sockets = new Set<Socket>()
  /** TLS sockets: HTTP/1.1 over TLS keeps its response on the TLS socket, not the TCP one. */
  private readonly secure = new Set<Socket>()
  private draining: Promise<DrainResult> | undefined

  /** HTTP/2 sessions (TLS with h2, or h2c) get GOAWAY and finish their streams. */
  constructor(private readonly server: ListenerServer, private readonly clock: Clock = realClock, private readonly sessions?: Http2Sessions) {
    server.on('connection', (s: Socket) => {
      this.sockets.add(s)
      s.once('close', () => this.sockets.delete(s))
    })
    server.on('secureConnection', (s: Socket) => {
      this.secure.add(s)
      s.once('close', () => this.secure.delete(s))
    })
  }

  /** Whether drain() has been called. */
  get started(): boolean {
    return this.draining !== undefined
  }

  /** Open client connections. */
  get open(): number {
    return this.sockets.size
  }

  drain(deadlineMs: number): Promise<DrainResult> {
    this.draining ??= new Promise<DrainResult>((resolve) => {
      const server = this.server as HttpServer
      DRAINING.add(server)
      server.prependListener('request', (_req, res: ServerResponse) => { res.shouldKeepAlive = false })
      for (const set of [this.sockets, this.secure]) {
        for (const s of set) {
          const res = (s as Socket & { _httpMessage?: ServerResponse | null })._httpMessage
          if (res != null && !res.headersSent) res.shouldKeepAlive = false
        }
      }
      this.sessions?.closeGracefully()
      let forced = 0
      const timer = this.clock.setTimeout(() => {
        forced = this.sockets.size
        if (typeof server.closeAllConnections === 'function') server.closeAllConnections()
        this.sessions?.destroyAll()
        for (const s of this.sockets) s.destroy()
      }, deadlineMs)
      const done = (): void => {
        this.clock.clearTimeout(timer)
        resolve({ forced })
      }
      // net.Server's close: stop accepting and call back once every connection has ended,
      // without http.Server.close()'s closeIdleConnections() (see above).
      if (this.server.listening) NetServer.prototype.close.call(this.server, () => done())
      else if (this.sockets.size === 0) done()
      else for (const s of this.sockets) s.once('close', () => { if (this.sockets.size === 0) done() })
    })
    return this.draining
  }
}
