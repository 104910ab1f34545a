import { randomUUID } from 'node:crypto'
import { METHODS, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { EDGE_ERRORS, errorBody, type ProxyError } from '../errors.js'
import { methodLabel, type ProxyMetrics } from '../metrics/proxy-metrics.js'
import type { HttpCache } from '../cache/http-cache.js'
import type { UpstreamDispatcher } from '../upstreams/dispatcher.js'
import { type AttemptDeps, ClientBodyError } from './attempt-loop.js'
import { ClientWriter, VIA } from './client-writer.js'
import { routeRequest, type RoutedRequest } from './request-edge.js'
import { recordSplitAnswer, recordSplitAssignment } from './split-record.js'
import { readRequestBody } from './request-body.js'
import type { Runtime } from './runtime.js'
import { serveRequest } from './serve-request.js'
import type { TunnelRegistry } from './tunnel-registry.js'
import { createUpgradeListener } from './upgrade.js'
import { screen } from '../security/firewall-gate.js'
import { httpsLocation, type ListenerInfo } from '../listeners/listener-info.js'
import { lazyChildLogger } from '../listeners/lazy-child-logger.js'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import type { AccessLog } from '../access-log/access-log.js'
import type { ForwardService } from '../forward/forward-service.js'

export interface ProxyDeps {
  /** The live runtime; read once per request so a reload swaps it atomically. */
  runtime: () => Runtime
  metrics: ProxyMetrics
  dispatcher: UpstreamDispatcher
  cache: HttpCache | undefined
  /** The access log (access-log/); undefined when logging.access_log is off. */
  accessLog: AccessLog | undefined
  /** Open WebSocket tunnels, shared by every listener (upgrade.ts). */
  tunnels: TunnelRegistry
  /** The listener this pipeline serves (each listener registers the plugin with its own). */
  listener?: ListenerInfo
  /** limits.max_event_loop_delay_ms is passed (proxy-server.ts): shed with 503. */
  overloaded?: () => boolean
  /** The forward proxy's shared parts, when a listener has mode: forward (src/forward). */
  forward?: ForwardService
}

const BODYLESS = new Set(['GET', 'HEAD'])
/** RFC 8555 section 8.3: HTTP-01 challenges are fetched over plain HTTP, never redirected. */
const ACME_CHALLENGE = '/.well-known/acme-challenge/'
const REQUEST_ID = /^[A-Za-z0-9._:/+=-]{1,128}$/

/** What the response's 'close' handler needs; kept on the response, so no closure per request. */
interface Tracked {
  readonly deps: ProxyDeps
  readonly request: FastifyRequest
  readonly routed: RoutedRequest | undefined
  readonly writer: ClientWriter
  /** performance.now() when the request arrived. */
  readonly start: number
}
const kTracked = Symbol('switchyard.tracked')
type TrackedResponse = ServerResponse & { [kTracked]?: Tracked }

const kClosing = Symbol('switchyard.closing')
type ClosingSocket = IncomingMessage['socket'] & { [kClosing]?: boolean }

/** Metrics, the access log and client-abort handling, once per request when its response closes. */
function onResponseClose(this: TrackedResponse): void {
  const t = this[kTracked]
  if (t === undefined) return
  this[kTracked] = undefined
  const { metrics } = t.deps
  const routed = t.routed
  const routeName = routed?.route.name ?? ''
  const poolName = routed?.pool.name ?? ''
  // An HTTP/2 stream the client reset also reads as finished: its reset code tells.
  const finished = this.writableFinished && ((this as unknown as Http2ServerResponse).stream?.rstCode ?? 0) === 0
  const code = finished ? String(this.statusCode) : '499'
  const seconds = (performance.now() - t.start) / 1000
  metrics.hot.requests.get(routeName, poolName, methodLabel(t.request.method), code).inc()
  if (routed !== undefined) {
    metrics.hot.requestDuration.get(routeName, poolName).observe(seconds)
    metrics.hot.inFlight.get(routeName).dec()
    if (routed.split !== undefined) recordSplitAnswer(metrics, routed, finished ? this.statusCode : 499, seconds)
  }
  // The client went away before the answer was complete: stop the upstream exchange.
  if (!finished) {
    t.writer.flow?.abort()
    // Its timers (the stall limit) and compressor go with it.
    t.writer.cut()
  }
  t.deps.accessLog?.request(t.request.raw, t.writer, routed, t.request.id, finished ? this.statusCode : 499, t.start)
}

/**
 * The request path (README "Architecture"):
 *
 *   request edge (request-edge.ts: framing, target, Host, path, route, client address, split)
 *   -> request body (request-body.ts: buffered up to the retry buffer, else streamed)
 *   -> [cache interceptor (cache/http-cache.ts): hit replayed | miss, revalidation, refresh]
 *   -> attempt loop (attempt-loop.ts: admission, member choice, timeouts, retries, health)
 *   -> sink (forward-sink.ts, or the cache's fill sink) -> client writer (client-writer.ts)
 *
 * Every answer to the client, forwarded, stored or the proxy's own, goes through ClientWriter.
 */
export async function proxyPlugin(app: FastifyInstance, deps: ProxyDeps): Promise<void> {
  const attemptDeps: AttemptDeps = {
    dispatch: (origin, opts, handler) => deps.dispatcher.dispatch(origin, opts, handler),
    metrics: deps.metrics
  }
  // CONNECT never reaches a route (Node emits it on the server): refuse it rather than hang up.
  app.server.on('connect', (req: IncomingMessage, socket) => {
    const body = errorBody(EDGE_ERRORS.method_not_allowed, 'CONNECT is not proxied')
    deps.accessLog?.own(req, undefined, EDGE_ERRORS.method_not_allowed.status, Buffer.byteLength(body), 0)
    socket.end(`HTTP/1.1 405 Method Not Allowed\r\nAllow: ${EDGE_ERRORS.method_not_allowed.headers?.allow ?? ''}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  })
  // Upgrade requests: WebSocket tunnels; any other is served without its Upgrade (upgrade.ts).
  // The listener's tunnels close with it (after the drain deadline on shutdown).
  app.server.on('upgrade', createUpgradeListener(app.server, deps, app.log))
  app.addHook('preClose', (done) => { deps.tunnels.closeAll(app.server); done() })
  // Errors raised before the handler (e.g. under-pressure's 503): a short plain answer from the table.
  app.setErrorHandler((err, request, reply) => {
    const status = (err as { statusCode?: number }).statusCode
    const e = status === 503 ? EDGE_ERRORS.overloaded : EDGE_ERRORS.internal
    deps.metrics.unrouted.labels(e.name).inc()
    if (e === EDGE_ERRORS.internal) request.log.warn({ err }, 'request failed')
    if (reply.raw.headersSent) {
      reply.raw.destroy()
      return
    }
    const body = errorBody(e)
    deps.accessLog?.own(request.raw, request.id, e.status, Buffer.byteLength(body), reply.elapsedTime)
    return reply.code(e.status).headers({ 'content-type': 'text/plain; charset=utf-8', 'x-request-id': request.id, ...e.headers }).send(body)
  })
  // Never parse bodies: every content type passes through as the raw stream.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload))

  const handler = (request: FastifyRequest, reply: FastifyReply): void => {
    // From here on every byte to the client is written by ClientWriter.
    reply.hijack()
    const raw = request.raw
    const res = reply.raw as TrackedResponse
    if (deps.overloaded?.() === true) {
      deps.metrics.unrouted.labels(EDGE_ERRORS.overloaded.name).inc()
      new ClientWriter(res, raw, request.id, undefined, 30000).error(EDGE_ERRORS.overloaded)
      return
    }
    // A framing fault earlier on this connection: requests pipelined behind it are never served.
    if ((raw.socket as ClosingSocket)[kClosing] === true) {
      raw.socket.destroy()
      return
    }
    const listener = deps.listener
    const start = performance.now()
    if (listener !== undefined) {
      if (listener.redirect !== undefined && !(raw.url ?? '').startsWith(ACME_CHALLENGE)) {
        redirectToHttps(raw, res, request.id, listener.redirect, deps, start)
        return
      }
      if (listener.hsts !== undefined) res.setHeader('strict-transport-security', listener.hsts)
    }
    const rt = deps.runtime()
    // Node's compatibility request: HTTP/1 text claiming version 2.0 has no stream.
    const h2 = raw.httpVersionMajor === 2 && (raw as unknown as Partial<Http2ServerRequest>).stream !== undefined
    const edge = routeRequest({
      method: request.method,
      url: raw.url ?? '/',
      headers: request.headers,
      rawHeaders: raw.rawHeaders,
      versionMajor: raw.httpVersionMajor,
      versionMinor: raw.httpVersionMinor,
      peer: raw.socket.remoteAddress,
      scheme: listener?.scheme ?? 'http',
      http2: h2,
      endStream: h2 ? (raw as unknown as Http2ServerRequest).stream.endAfterHeaders : undefined,
      maxHeaderBytes: h2 ? rt.config.limits.max_header_bytes : undefined,
      id: request.id,
      start
    }, rt)
    if (!edge.ok) {
      const writer = new ClientWriter(res, raw, request.id, undefined, 30000)
      res[kTracked] = { deps, request, routed: undefined, writer, start }
      res.once('close', onResponseClose)
      deps.metrics.unrouted.labels(edge.error.name).inc()
      answerEdgeError(raw, writer, edge.error, edge.detail)
      return
    }
    const routed = edge.routed
    const writer = new ClientWriter(res, raw, request.id, routed.split, routed.pool.requestTimeoutMs, routed.route.compress)
    res[kTracked] = { deps, request, routed, writer, start }
    res.once('close', onResponseClose)
    deps.metrics.hot.inFlight.get(routed.route.name).inc()
    if (routed.split !== undefined) recordSplitAssignment(deps.metrics, routed.split, request.id, request.log)
    // Access rules (security/firewall.ts) run before the body is read and before the cache.
    const fw = routed.route.firewall
    if (fw !== undefined) {
      screen(fw, routed, writer, () => admit(rt, routed, writer, request), (err) => {
        request.log.error({ err }, 'access check failed')
        writer.error(EDGE_ERRORS.internal)
      })
      return
    }
    admit(rt, routed, writer, request)
  }

  /** The admitted request: its body (read or streamed), then the cache or the forward. */
  const admit = (rt: Runtime, routed: RoutedRequest, writer: ClientWriter, request: FastifyRequest): void => {
    const raw = request.raw
    try {
      if (routed.bodyLength === 0 || BODYLESS.has(routed.method)) {
        proxy(rt, routed, null, writer)
        return
      }
      const limits = rt.config.limits
      readRequestBody(raw, routed.bodyLength, {
        bufferBytes: routed.route.retries.buffer_body_bytes,
        maxBytes: routed.route.maxBodyBytes,
        betweenReadsMs: limits.client_body_timeout_ms,
        deadline: limits.request_timeout_ms > 0 ? routed.start + limits.request_timeout_ms : 0
      }, writer).then((body) => proxy(rt, routed, body, writer), (err: unknown) => {
        const e = err instanceof ClientBodyError ? err.proxyError : EDGE_ERRORS.bad_request
        deps.metrics.unrouted.labels(e.name).inc()
        request.log.info({ route: routed.route.name, reason: e.name }, 'request body refused')
        answerEdgeError(raw, writer, e, err instanceof ClientBodyError ? err.message : undefined)
      })
    } catch (err) {
      request.log.error({ err }, 'request failed')
      writer.error(EDGE_ERRORS.internal)
    }
  }

  /** The cache when the route caches (it may decline: unsafe methods, Range), else the plain forward. */
  const proxy = (rt: Runtime, routed: RoutedRequest, body: Buffer | Readable | null, writer: ClientWriter): void => {
    // The runtime the request was routed with, also after a reload in between.
    serveRequest(deps.cache, attemptDeps, routed, body, writer, !rt.config.limits.underscores_in_headers)
  }

  // Proxy every method Node's parser accepts (WebDAV and friends too), except CONNECT: we never tunnel.
  for (const m of METHODS) {
    if (m !== 'CONNECT' && !app.supportedMethods.includes(m)) app.addHttpMethod(m, { hasBody: true })
  }
  app.route({
    method: app.supportedMethods.filter((m) => m !== 'CONNECT'),
    url: '/*',
    // No pino child per request: made only if the request logs something (issue 15).
    childLoggerFactory: lazyChildLogger,
    handler
  })
  app.setNotFoundHandler((request, reply) => {
    // Only reached for methods Fastify does not route (e.g. an unknown extension method).
    const e = EDGE_ERRORS.not_implemented
    deps.metrics.unrouted.labels(e.name).inc()
    const body = errorBody(e, `method ${request.method} is not supported`)
    deps.accessLog?.own(request.raw, request.id, e.status, Buffer.byteLength(body), reply.elapsedTime)
    return reply.code(e.status).headers({ 'content-type': 'text/plain; charset=utf-8', connection: 'close', 'x-request-id': request.id }).send(body)
  })
}

/**
 * A plain listener with redirect_https answers every request with a redirect to the same target
 * over https (nginx's `return 308 https://$host$request_uri`), except ACME HTTP-01 challenges,
 * which must be answered over plain HTTP (RFC 8555 section 8.3): those are routed as usual.
 */
function redirectToHttps(raw: IncomingMessage, res: ServerResponse, id: string, to: NonNullable<ListenerInfo['redirect']>, deps: ProxyDeps, start: number): void {
  const writer = new ClientWriter(res, raw, id, undefined, 30000)
  const accessLog = deps.accessLog
  if (accessLog !== undefined) res.once('close', () => accessLog.request(raw, writer, undefined, id, res.writableFinished ? res.statusCode : 499, start))
  const host = raw.httpVersionMajor === 2 ? (raw.headers[':authority'] as string | undefined) ?? raw.headers.host : raw.headers.host
  const location = httpsLocation(host, raw.url ?? '/', to.port)
  deps.metrics.unrouted.labels(location === undefined ? EDGE_ERRORS.bad_host.name : 'redirect_https').inc()
  if (location === undefined) {
    writer.error(EDGE_ERRORS.bad_host)
    return
  }
  const body = `Moved to ${location}\n`
  writer.whole(to.status, { location, 'content-type': 'text/plain; charset=utf-8', via: `1.1 ${VIA}`, 'x-request-id': id }, Buffer.from(body))
}

/** An edge error answer; one that ends the connection drops anything pipelined behind it unread. */
function answerEdgeError(raw: IncomingMessage, writer: ClientWriter, error: ProxyError, detail: string | undefined): void {
  // HTTP/1 only: an HTTP/2 request's socket is the session's, shared by every other stream.
  if (error.close && raw.socket !== null && raw.httpVersionMajor === 1) (raw.socket as ClosingSocket)[kClosing] = true
  writer.error(error, detail)
}

export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID()
}
