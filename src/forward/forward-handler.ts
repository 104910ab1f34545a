/**
 * A `mode: forward` listener's request path, beside the reverse pipeline and built from the same
 * parts (README "Forward proxy"):
 *
 *   target (forward-target.ts: absolute-form or CONNECT authority)
 *   -> who (forward-policy.ts admit: client CIDRs, Proxy-Authorization Basic; 407 / 403)
 *   -> where (checkTarget: deny rules, block lists, allow rules, address targets; 403 naming the rule)
 *   -> plain request: request body -> [cache interceptor] -> attempt loop -> client writer,
 *      the origin reached through a per-origin pool whose lookup refuses special addresses
 *   -> CONNECT: a TCP connection through the same lookup, relayed by routing/tunnel.ts
 */
import { connect as netConnect, type Socket } from 'node:net'
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { Logger } from 'pino'
import { EDGE_ERRORS, classifyUpstreamError, errorBody, type ProxyError } from '../errors.js'
import { methodLabel } from '../metrics/proxy-metrics.js'
import { ClientBodyError } from '../routing/attempt-loop.js'
import { ClientWriter, VIA } from '../routing/client-writer.js'
import type { ProxyDeps } from '../routing/proxy-plugin.js'
import { requestIdFrom } from '../routing/proxy-plugin.js'
import type { RoutedRequest } from '../routing/request-edge.js'
import { readRequestBody } from '../routing/request-body.js'
import type { Runtime } from '../routing/runtime.js'
import { Tunnel } from '../routing/tunnel.js'
import { serveRequest } from '../routing/serve-request.js'
import { Member } from '../upstreams/member.js'
import type { ForwardService } from './forward-service.js'
import { FORWARD_POOL, FORWARD_ROUTE, proxyAuthorization, type Admission, type Denial, type ForwardPolicy, type ForwardScope } from './forward-policy.js'
import { parseAbsoluteTarget, parseAuthority } from './forward-target.js'
import { ForwardDenied, forbidden, forwardDenial, safeLookup, type DenialError } from './safe-lookup.js'

const BODYLESS = new Set(['GET', 'HEAD'])
const NOT_CONFIGURED: ProxyError = { name: 'forward_off', status: 503, reason: 'the forward proxy has no configuration', close: true }

function authRequired(realm: string, d: Denial): DenialError {
  return { name: 'forward_auth', status: 407, reason: d.detail, close: false, headers: { 'proxy-authenticate': `Basic realm="${realm}"` }, denial: d }
}

function stripMapped(ip: string | undefined): string {
  if (ip === undefined) return ''
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip
}

/**
 * The client writer of a forward request: a response whose Content-Type a filter blocks is
 * answered 403 instead (stored answers too: the filter runs on every head, hits included).
 */
export class ForwardWriter extends ClientWriter {
  /** The content filter refused the answer: the 403 is written, the rest is dropped. */
  refused: Denial | undefined = undefined
  private own = false

  constructor(res: ServerResponse, req: IncomingMessage, private readonly reqId: string, stallMs: number, private readonly policy: ForwardPolicy | undefined, private readonly onDenied: (d: Denial) => void) {
    super(res, req, reqId, undefined, stallMs)
  }

  override head(status: number, headers: OutgoingHttpHeaders, statusMessage?: string): boolean {
    if (!this.own && this.refused === undefined && this.policy !== undefined && status >= 200) {
      const d = this.policy.checkType(headers['content-type'])
      if (d !== undefined) {
        this.refused = d
        this.onDenied(d)
        const body = Buffer.from(errorBody(forbidden(d), d.detail))
        if (super.head(403, { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length, via: `1.1 ${VIA}`, 'x-request-id': this.reqId })) super.end(body)
        return false
      }
    }
    return super.head(status, headers, statusMessage)
  }

  /** The proxy's own answer; a refusal (by the rules, or by the lookup at connect time) is counted here, once. */
  override error(err: ProxyError, detail?: string): void {
    this.own = true
    const d = (err as Partial<DenialError>).denial
    if (d !== undefined) this.onDenied(d)
    super.error(err, detail)
  }

  override write(chunk: Buffer): boolean {
    return this.refused === undefined ? super.write(chunk) : true
  }

  override end(body?: Buffer): void {
    if (this.refused === undefined) super.end(body)
  }

  override cut(): void {
    if (this.refused === undefined) super.cut()
  }
}

/** What a forward proxy access log line knows beyond the request itself. */
interface ForwardFacts {
  readonly user: string | undefined
  readonly firewall: string | undefined
  readonly anonymous?: boolean
  readonly cache?: string
  readonly origin?: string
  readonly member?: string
  readonly bytesIn?: number
  readonly bytesOut?: number
  readonly upstreamMs?: number
  readonly tunnel?: boolean
  readonly responseHeaders?: OutgoingHttpHeaders
}

export interface ForwardListener {
  handle(req: IncomingMessage, res: ServerResponse): void
  connect(req: IncomingMessage, socket: Socket, head: Buffer): void
}

/**
 * `overloaded`: limits.max_event_loop_delay_ms load shedding, as the reverse listeners'
 * (proxy-plugin.ts): a 503 with Retry-After before any work while the event loop lags.
 */
export function createForwardListener(svc: ForwardService, deps: ProxyDeps, server: object, log: Logger, overloaded: () => boolean = () => false): ForwardListener {
  const metrics = svc.metrics

  const denied = (d: Denial, writer: ClientWriter): void => {
    metrics.denials.get(d.rule).inc()
    writer.firewall = `deny:${d.rule}`
  }

  /** One access log line (access-log/): plain requests when their response closes, CONNECT when refused or when its tunnel closes. */
  const accessLog = (req: IncomingMessage, id: string, client: string, status: number, start: number, facts: ForwardFacts): void => {
    deps.accessLog?.write((r) => {
      r.client = client
      r.user = facts.user
      r.method = req.method ?? ''
      r.target = req.url ?? ''
      r.protocol = req.httpVersionMinor === 0 ? 'HTTP/1.0' : 'HTTP/1.1'
      r.status = status
      r.bytesIn = facts.bytesIn ?? 0
      r.bytesOut = facts.bytesOut ?? 0
      r.durationMs = performance.now() - start
      r.upstreamMs = facts.upstreamMs
      r.route = FORWARD_ROUTE
      r.pool = facts.origin
      r.member = facts.member
      r.cache = facts.cache
      r.requestId = id
      r.firewall = facts.firewall
      r.anonymous = facts.anonymous ?? false
      r.upgrade = facts.tunnel === true ? 'connect' : undefined
      r.requestHeaders = req.headers
      r.responseHeaders = facts.responseHeaders
    })
  }

  const handleRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const start = performance.now()
    const id = requestIdFrom(req.headers['x-request-id'])
    const rt = deps.runtime()
    const policy = rt.forward
    const peer = stripMapped(req.socket.remoteAddress)
    const method = req.method ?? 'GET'
    const writer: ForwardWriter = new ForwardWriter(res, req, id, policy?.config.timeouts.request_ms ?? 30000, policy, (d) => denied(d, writer))
    res.once('close', () => {
      const finished = res.writableFinished
      const code = finished ? String(res.statusCode) : '499'
      metrics.requests.get(methodLabel(method), code).inc()
      if (!finished) {
        writer.flow?.abort()
        writer.cut()
      }
      accessLog(req, id, peer, finished ? res.statusCode : 499, start, { origin: FORWARD_POOL, user: writer.user, firewall: writer.firewall, anonymous: writer.anonymous, cache: writer.cacheStatus, member: writer.member, bytesIn: writer.bytesIn, bytesOut: writer.bytesOut, upstreamMs: writer.upstreamMs, responseHeaders: writer.responseHeaders })
    })
    if (policy === undefined) return writer.error(NOT_CONFIGURED)
    if (overloaded()) return writer.error(EDGE_ERRORS.overloaded)
    if (method === 'TRACE') return writer.error(EDGE_ERRORS.method_not_allowed, 'TRACE is not proxied')
    // RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message is a framing fault.
    if (req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) return writer.error(EDGE_ERRORS.bad_framing)
    const target = parseAbsoluteTarget(req.url ?? '')
    if (typeof target === 'string') return writer.error(EDGE_ERRORS.bad_path, target)
    const admitted = policy.admit(peer, proxyAuthorization(req.headers))
    const go = (a: Admission): void => {
      if (writer.closed) return
      if (!a.ok) {
        return writer.error(a.status === 407 ? authRequired(policy.realm, a.denial) : forbidden(a.denial), a.denial.detail)
      }
      writer.user = a.user
      const d = policy.checkTarget(a.scope, target.host, target.port, false) ?? policy.checkPath(target.path + target.query)
      if (d !== undefined) return writer.error(forbidden(d), d.detail)
      writer.firewall = 'allow'
      writer.anonymous = policy.anonymous
      const len = req.headers['content-length']
      const bodyLength = len !== undefined ? Number(len) : req.headers['transfer-encoding'] !== undefined && !BODYLESS.has(method) ? -1 : 0
      if (bodyLength > policy.route.maxBodyBytes) return writer.error(EDGE_ERRORS.body_too_large, `request body exceeds ${policy.route.maxBodyBytes} bytes`)
      const routed: RoutedRequest = {
        id,
        start,
        method,
        headers: req.headers,
        httpVersion: req.httpVersionMinor === 0 ? '1.0' : '1.1',
        scheme: 'http',
        host: target.host,
        authority: target.authority,
        path: target.path,
        query: target.query,
        route: policy.route,
        pool: svc.origins.pool(policy, a.scope, target.origin, target.port),
        split: undefined,
        clientIp: peer,
        peerIp: peer,
        // Never trust a client's own forwarding fields: the proxy starts the chain.
        trustedPeer: false,
        bodyLength,
        forward: policy
      }
      if (bodyLength === 0 || BODYLESS.has(method)) return proxy(rt, routed, a.scope, null, writer)
      const limits = rt.config.limits
      readRequestBody(req, bodyLength, {
        bufferBytes: policy.route.retries.buffer_body_bytes,
        maxBytes: policy.route.maxBodyBytes,
        betweenReadsMs: limits.client_body_timeout_ms,
        deadline: limits.request_timeout_ms > 0 ? start + limits.request_timeout_ms : 0
      }).then((body) => proxy(rt, routed, a.scope, body, writer), (err: unknown) => {
        const e = err instanceof ClientBodyError ? err.proxyError : EDGE_ERRORS.bad_request
        writer.error(e, err instanceof ClientBodyError ? err.message : undefined)
      })
    }
    if (admitted instanceof Promise) {
      admitted.then((a) => { try { go(a) } catch (err) { failedRequest(err, req, res) } }, (err: unknown) => {
        log.error({ err }, 'forward proxy authentication failed')
        writer.error(EDGE_ERRORS.internal)
      })
    } else {
      go(admitted)
    }
  }

  /** The cache for a cacheable request (same store and rules as the routes), else the plain forward. */
  const proxy = (rt: Runtime, routed: RoutedRequest, scope: ForwardScope, body: Buffer | Readable | null, writer: ClientWriter): void => {
    serveRequest(deps.cache, svc.attemptDeps(scope), routed, body, writer, !rt.config.limits.underscores_in_headers)
  }


  /** CONNECT host:port (RFC 9110 section 9.3.6): a TCP tunnel once the rules allow it. */
  const connectRequest = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
    const start = performance.now()
    const id = requestIdFrom(req.headers['x-request-id'])
    const peer = stripMapped(socket.remoteAddress)
    const policy = deps.runtime().forward
    let user: string | undefined
    let firewall: string | undefined
    // Until the tunnel opens, a client error only closes its socket.
    const onEarlyError = (): void => { socket.destroy() }
    socket.on('error', onEarlyError)
    const answer = (status: number, reason: string, body: string, extra = ''): void => {
      metrics.requests.get('CONNECT', String(status)).inc()
      accessLog(req, id, peer, status, start, { user, firewall })
      if (!socket.writable) { socket.destroy(); return }
      // A CONNECT connection carries nothing after a refusal: the parser has let go of it.
      socket.end(`HTTP/1.1 ${status} ${reason}\r\n${extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nVia: 1.1 ${VIA}\r\nX-Request-Id: ${id}\r\nConnection: close\r\n\r\n${body}`)
    }
    const refuse = (d: Denial, status: 403 | 407): void => {
      metrics.denials.get(d.rule).inc()
      metrics.tunnels.get('denied').inc()
      firewall = `deny:${d.rule}`
      const auth = status === 407 ? `Proxy-Authenticate: Basic realm="${policy?.realm ?? 'switchyard'}"\r\n` : ''
      answer(status, status === 407 ? 'Proxy Authentication Required' : 'Forbidden', errorBody(status === 407 ? authRequired(policy?.realm ?? '', d) : forbidden(d), d.detail), auth)
    }
    if (policy === undefined) return answer(503, 'Service Unavailable', errorBody(NOT_CONFIGURED))
    if (overloaded()) return answer(503, 'Service Unavailable', errorBody(EDGE_ERRORS.overloaded), 'Retry-After: 1\r\n')
    const a = parseAuthority(req.url ?? '', undefined)
    if (a === undefined) return answer(400, 'Bad Request', errorBody(EDGE_ERRORS.bad_path, 'CONNECT needs host:port'))
    const go = (adm: Admission): void => {
      if (socket.destroyed) return
      if (!adm.ok) return refuse(adm.denial, adm.status)
      user = adm.user
      const d = policy.checkTarget(adm.scope, a.host, a.port, true)
      if (d !== undefined) return refuse(d, 403)
      firewall = 'allow'
      if (!svc.tunnels.reserve(policy.config.max_tunnels)) {
        metrics.tunnels.get('limit').inc()
        return answer(503, 'Service Unavailable', errorBody(EDGE_ERRORS.tunnel_limit, 'too many CONNECT tunnels, retry shortly'), 'Retry-After: 1\r\n')
      }
      const scope = adm.scope
      const upstream = netConnect({ host: a.host, port: a.port, lookup: safeLookup(svc.resolver, (address) => policy.checkAddress(scope, address, a.port)) })
      const connectMs = policy.config.timeouts.connect_ms
      if (connectMs > 0) upstream.setTimeout(connectMs, () => upstream.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' })))
      // The reserved slot goes back exactly once, whichever way the connect ends (an error, a
      // destroy without one when the client leaves first, the client gone when it connects);
      // or it passes to the tunnel (tunnels.add). Without this, a client reset during the
      // connect leaked a forward.max_tunnels slot for good.
      let settled = false
      const giveBack = (): void => {
        if (settled) return
        settled = true
        svc.tunnels.release()
      }
      upstream.once('close', giveBack)
      const onConnectError = (err: Error): void => {
        giveBack()
        const denial = forwardDenial(err)
        if (denial !== undefined) return refuse(denial, 403)
        const c = classifyUpstreamError(err)
        metrics.tunnels.get('error').inc()
        answer(c.status, c.status === 504 ? 'Gateway Timeout' : 'Bad Gateway', errorBody(c, `${req.url ?? ''}: ${c.reason}`))
      }
      upstream.once('error', onConnectError)
      socket.once('close', () => {
        if (settled) return
        giveBack()
        upstream.destroy()
      })
      upstream.once('connect', () => {
        // Second line of the SSRF guard: the address connected to, whatever the lookup did (none for an IP literal).
        const late = policy.checkAddress(scope, upstream.remoteAddress ?? '', a.port)
        if (late !== undefined) {
          upstream.destroy(new ForwardDenied(late))
          return
        }
        upstream.off('error', onConnectError)
        upstream.setTimeout(0)
        if (socket.destroyed) {
          giveBack()
          upstream.destroy()
          return
        }
        settled = true
        upstream.off('close', giveBack)
        socket.off('error', onEarlyError)
        metrics.tunnels.get('opened').inc()
        metrics.requests.get('CONNECT', '200').inc()
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
        if (head.length > 0) upstream.write(head)
        const member = new Member(0, { url: `tcp://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`, weight: 1, name: 'origin' })
        const tunnel = new Tunnel(socket, upstream, { id, route: FORWARD_ROUTE, pool: FORWARD_POOL, member, listener: server, path: req.url ?? '', clientIp: peer }, (t) => {
          svc.tunnels.closed(t)
          log.debug({ reqId: id, target: req.url, up: t.up, down: t.down }, 'tunnel closed')
          // As a WebSocket's: one line when the tunnel closes, with the bytes relayed each way.
          accessLog(req, id, peer, 200, start, { user, firewall, tunnel: true, bytesIn: t.up, bytesOut: t.down, member: req.url })
        })
        svc.tunnels.add(tunnel)
        tunnel.start(policy.config.tunnel_idle_timeout_ms)
      })
    }
    const admitted = policy.admit(peer, proxyAuthorization(req.headers))
    if (admitted instanceof Promise) admitted.then((adm) => { try { go(adm) } catch (err) { failedConnect(err, req, socket) } }, () => answer(500, 'Internal Server Error', errorBody(EDGE_ERRORS.internal)))
    else go(admitted)
  }

  /**
   * A bug must cost one request, never the process: these run in the server's 'request' and
   * 'connect' events, where an uncaught throw would take every connection of the worker with it.
   */
  const failedRequest = (err: unknown, req: IncomingMessage, res: ServerResponse): void => {
    log.error({ err, target: req.url }, 'forward request failed')
    if (res.headersSent || res.destroyed) {
      res.destroy()
      return
    }
    const body = errorBody(EDGE_ERRORS.internal)
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close', via: `1.1 ${VIA}` })
    res.end(body)
  }
  const failedConnect = (err: unknown, req: IncomingMessage, socket: Socket): void => {
    log.error({ err, target: req.url }, 'forward CONNECT failed')
    socket.destroy()
  }

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    try {
      handleRequest(req, res)
    } catch (err) {
      failedRequest(err, req, res)
    }
  }
  const connect = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
    try {
      connectRequest(req, socket, head)
    } catch (err) {
      failedConnect(err, req, socket)
    }
  }

  return { handle, connect }
}
