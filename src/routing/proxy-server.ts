import underPressure from '@fastify/under-pressure'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from '../config/schema.js'
import { proxyPlugin, requestIdFrom, type ProxyDeps } from './proxy-plugin.js'

/**
 * The proxy listener: Fastify with the limits of `config.limits`, overload shedding and the
 * request pipeline (proxy-plugin.ts). Not listening yet; the caller listens and closes it.
 */
export async function buildProxyServer(config: Config, deps: ProxyDeps, logger: Logger): Promise<FastifyInstance> {
  const limits = config.limits
  const proxy = Fastify({
    loggerInstance: logger as unknown as FastifyBaseLogger,
    // Per-request info logs cost more than the proxying itself; access_log opts in instead.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: (req) => requestIdFrom(req.headers['x-request-id']),
    http: {
      maxHeaderSize: limits.max_header_bytes,
      insecureHTTPParser: false,
      headersTimeout: limits.headers_timeout_ms,
      requireHostHeader: true,
      // Node enforces headers/request timeouts only when it sweeps connections (every 30 s by
      // default): sweep often enough that slow heads and bodies are cut within the limits.
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(Math.min(limits.headers_timeout_ms || 1000, limits.request_timeout_ms || 1000) / 4)))
    },
    keepAliveTimeout: limits.keep_alive_timeout_ms,
    requestTimeout: limits.request_timeout_ms,
    connectionTimeout: 0,
    return503OnClosing: true,
    forceCloseConnections: 'idle'
  })

  if (limits.max_connections > 0) proxy.server.maxConnections = limits.max_connections
  if (limits.max_event_loop_delay_ms > 0) {
    // Shed load fast while the event loop is overloaded; the admin listener is a separate
    // Fastify instance, so probes and metrics keep answering.
    await proxy.register(underPressure, {
      maxEventLoopDelay: limits.max_event_loop_delay_ms,
      retryAfter: 1,
      message: 'Service Unavailable: the proxy is overloaded, retry shortly',
      exposeStatusRoute: false
    })
  }
  await proxy.register(proxyPlugin, deps)
  return proxy
}
