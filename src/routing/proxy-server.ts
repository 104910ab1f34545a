import type { Socket } from 'node:net'
import underPressure from '@fastify/under-pressure'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Config, ListenerConfig } from '../config/schema.js'
import { EDGE_ERRORS, errorBody, type ProxyError } from '../errors.js'
import { http11RequiredFrames } from '../listeners/h2c-preface.js'
import type { ListenerInfo } from '../listeners/listener-info.js'
import { createListenerServer, type ListenerServer, type RequestHandler, type SessionHook, type TlsOptionsSource } from '../listeners/listener-server.js'
import { proxyPlugin, requestIdFrom, type ProxyDeps } from './proxy-plugin.js'
import { createForwardListener } from '../forward/forward-handler.js'
import type { ForwardService } from '../forward/forward-service.js'

export interface ListenerOptions {
  readonly config: ListenerConfig
  readonly info: ListenerInfo
  /** TLS listeners: the certificates (src/tls). */
  readonly tls?: TlsOptionsSource
  /** HTTP/2 sessions of this listener (limits, drain). */
  readonly onSession: SessionHook
}

/**
 * One proxy listener: Fastify on the listener's server (HTTP/1.1, TLS, HTTP/2, h2c: see
 * listener-server.ts) with the limits of `config.limits`, overload shedding and the request
 * pipeline (proxy-plugin.ts). Not listening yet; the caller listens and closes it.
 */
export async function buildProxyServer(config: Config, deps: ProxyDeps, logger: Logger, listener: ListenerOptions): Promise<FastifyInstance> {
  const limits = config.limits
  // A forward listener serves absolute-form requests and CONNECT itself (src/forward): Fastify
  // only owns the server's lifecycle (listen, close, idle connections).
  let forwardHandler: RequestHandler | undefined
  // Set below once under-pressure is registered; read per request (forward listeners too).
  let overloaded: (() => boolean) | undefined
  const forwardServer = listener.config.mode === 'forward' && deps.forward !== undefined
    ? (server: ListenerServer): ListenerServer => {
        const f = createForwardListener(deps.forward as ForwardService, deps, server, logger.child({ listener: listener.info.name }), () => overloaded?.() === true)
        forwardHandler = f.handle as RequestHandler
        server.on('connect', f.connect)
        return server
      }
    : undefined
  const proxy = Fastify({
    loggerInstance: logger as unknown as FastifyBaseLogger,
    // Per-request info logs cost more than the proxying itself; access_log opts in instead.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: (req) => requestIdFrom(req.headers['x-request-id']),
    serverFactory: (handler) => forwardServer === undefined
      ? createListenerServer(listener.config, config, handler as RequestHandler, listener.tls, listener.onSession) as never
      : forwardServer(createListenerServer(listener.config, config, (req, res) => (forwardHandler as RequestHandler)(req, res), undefined, listener.onSession)) as never,
    clientErrorHandler: answerClientError,
    return503OnClosing: true,
    // Idle HTTP/1.1 connections close with the listener; an HTTP/2 server has no such call, its
    // sessions are closed by the listener set (proxy-listeners.ts).
    forceCloseConnections: listener.config.tls?.alpn.includes('h2') === true ? false : 'idle'
  })

  if (limits.max_event_loop_delay_ms > 0) {
    // Shed load fast while the event loop is overloaded; the admin listener is a separate
    // Fastify instance, so probes and metrics keep answering. under-pressure samples the loop in
    // its own scope (no routes there): its onRequest hook would make Fastify run the hook chain
    // for every proxied request, so the proxy route asks isUnderPressure() itself (issue 15).
    await proxy.register(async (scope) => {
      await scope.register(underPressure, {
        maxEventLoopDelay: limits.max_event_loop_delay_ms,
        retryAfter: 1,
        message: 'Service Unavailable: the proxy is overloaded, retry shortly',
        exposeStatusRoute: false
      })
      overloaded = () => scope.isUnderPressure()
    })
  }
  // Each listener's pipeline reads the shared deps (the cache is set on them once a route
  // caches) through the prototype, and its own listener facts.
  const listenerDeps: ProxyDeps = Object.assign(Object.create(deps) as ProxyDeps, { listener: listener.info, overloaded })
  if (forwardServer !== undefined) {
    // The listener's CONNECT tunnels close with it (after the drain deadline on shutdown).
    proxy.addHook('preClose', (done) => { deps.forward?.tunnels.closeAll(proxy.server); done() })
    return proxy
  }
  await proxy.register(proxyPlugin, listenerDeps)
  return proxy
}

/** The node server Fastify runs on. */
export function listenerServer(proxy: FastifyInstance): ListenerServer {
  return proxy.server as unknown as ListenerServer
}

/**
 * Requests Node's HTTP/1 parser refuses before any handler runs: a short plain answer from the
 * errors table, then the connection closes. An HTTP/2 prior-knowledge client on a listener
 * without h2c gets GOAWAY HTTP_1_1_REQUIRED, which it understands, instead of HTTP/1 text.
 */
function answerClientError(err: NodeJS.ErrnoException & { bytesParsed?: number }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  if (err.code === 'HPE_PAUSED_H2_UPGRADE') {
    socket.end(http11RequiredFrames('HTTP/2 is not enabled on this listener (h2c: false): use HTTP/1.1'))
    // Read what the client still sends, so closing does not reset the answer away.
    socket.resume()
    setTimeout(() => socket.destroy(), 1000).unref()
    return
  }
  const e: ProxyError = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? EDGE_ERRORS.request_timeout
    : err.code === 'HPE_HEADER_OVERFLOW' ? EDGE_ERRORS.header_too_large
      : EDGE_ERRORS.bad_request
  if (socket.writable) {
    const body = errorBody(e)
    socket.write(`HTTP/1.1 ${e.status} ${STATUS_TEXT[e.status] ?? 'Error'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy()
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }
