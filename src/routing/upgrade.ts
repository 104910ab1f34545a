/**
 * Upgrade requests (RFC 9110 section 7.8). Node hands every request carrying `Connection:
 * upgrade` and `Upgrade` to the server's 'upgrade' event, on the raw socket, outside Fastify.
 * Here each one either becomes a WebSocket tunnel (RFC 6455) or goes back to the normal request
 * path without its Upgrade:
 *
 *   Upgrade lists websocket, GET, HTTP/1.1, no body, a route with websocket enabled
 *     -> max_tunnels slot -> handshake with a member (upgrade-exchange.ts: admission, the pool's
 *        member choice, connect and answer timeouts, retries, outlier detection)
 *     -> 101: the 101 to the client, then the tunnel (tunnel.ts) | another status: relayed,
 *        connection closed | no answer: 502/503/504 from the error table, connection closed
 *   anything else (h2c, other protocols, `websocket: false`, a request the edge refuses)
 *     -> the same request without Upgrade, parsed again by the listener's own HTTP parser, so
 *        Fastify serves it as any other request (nginx forwards without Upgrade unless told to
 *        pass it; RFC 9113 section 3.1 removed the h2c upgrade, and RFC 9110 lets a server ignore
 *        Upgrade).
 *
 * WebSocket over HTTP/2 (RFC 8441 extended CONNECT) is not offered: HTTP/2 listeners do not
 * announce SETTINGS_ENABLE_CONNECT_PROTOCOL, so clients open an HTTP/1.1 connection for it.
 */
import { STATUS_CODES, validateHeaderName, validateHeaderValue, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import type { RouteWebSocketConfig } from '../config/schema.js'
import type { ListenerInfo } from '../listeners/listener-info.js'
import { isDraining } from '../control/drain.js'
import { EDGE_ERRORS, errorBody, poolDetail, type ProxyError } from '../errors.js'
import type { ProxyMetrics } from '../metrics/proxy-metrics.js'
import type { TunnelCloseReason, TunnelResult } from '../metrics/tunnel-metrics.js'
import type { Member } from '../upstreams/member.js'
import { VIA } from './client-writer.js'
import { clientResponseHeaders, upstreamRequestHeaders } from './forwarding-headers.js'
import { requestIdFrom } from './proxy-plugin.js'
import { routeRequest, type RoutedRequest } from './request-edge.js'
import type { Runtime } from './runtime.js'
import { Tunnel } from './tunnel.js'
import type { TunnelRegistry } from './tunnel-registry.js'
import type { AccessLog } from '../access-log/access-log.js'
import { Handshake, hasToken, type HandshakeResult } from './upgrade-exchange.js'
import { serveWithoutUpgrade } from './without-upgrade.js'
import type { FirewallDecision } from '../security/firewall.js'
import { recordSplitAssignment } from './split-record.js'

/** What the upgrade listener needs (a subset of the proxy plugin's deps). */
export interface UpgradeDeps {
  runtime: () => Runtime
  metrics: ProxyMetrics
  tunnels: TunnelRegistry
  /** Undefined when logging.access_log is off. */
  accessLog: AccessLog | undefined
  /** The listener's redirect_https and HSTS (listener-info.ts). */
  listener?: ListenerInfo
}

/** The pino-style logger calls the listener makes. */
export interface UpgradeLog {
  info(obj: object, msg: string): void
  debug(obj: object, msg: string): void
}

type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void

/**
 * The 'upgrade' listener of one proxy listener (`server`: where requests that are not tunnelled
 * are parsed again). Add it with `server.on('upgrade', ...)`; close the listener's tunnels with
 * `deps.tunnels.closeAll(server)` when it closes.
 */
export function createUpgradeListener(server: object, deps: UpgradeDeps, log: UpgradeLog): UpgradeListener {
  return (req, socket, head) => {
    // Node removed its own listeners from the socket: an error with none would end the process.
    socket.on('error', destroySelf)
    // An upgrade pipelined behind an answer still being written: Node hands the socket over at
    // once, so wait for that answer to finish first.
    const pending = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage
    if (pending == null) {
      handle(server, deps, log, req, socket, head)
      return
    }
    const go = (): void => {
      pending.off('finish', go)
      pending.off('close', go)
      if (socket.writable && !socket.destroyed) handle(server, deps, log, req, socket, head)
      else socket.destroy()
    }
    pending.once('finish', go)
    pending.once('close', go)
  }
}

function handle(server: object, deps: UpgradeDeps, log: UpgradeLog, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  // A redirect_https listener redirects every request, upgrades too (Fastify answers it).
  if (!hasToken(req.headers.upgrade, 'websocket') || req.method !== 'GET' || req.httpVersion !== '1.1' || declaresBody(req.headers) || deps.listener?.redirect !== undefined) {
    handBack(server, req, socket, head)
    return
  }
  const rt = deps.runtime()
  const edge = routeRequest({
    method: 'GET',
    url: req.url ?? '/',
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    versionMajor: 1,
    versionMinor: 1,
    peer: (socket as Socket).remoteAddress,
    // The listener's scheme, read from the socket (a TLS listener's sockets are encrypted).
    scheme: (socket as Partial<TLSSocket>).encrypted === true ? 'https' : 'http',
    id: requestIdFrom(req.headers['x-request-id']),
    start: performance.now()
  }, rt)
  // The edge's refusals (no route, bad Host...) are answered by the normal path, counted there.
  if (!edge.ok) {
    handBack(server, req, socket, head)
    return
  }
  const routed = edge.routed
  const ws = routed.route.websocket
  if (!ws.enabled) {
    deps.tunnels.metrics.total.get(routed.route.name, routed.pool.name, 'disabled').inc()
    handBack(server, req, socket, head)
    return
  }
  new Upgrade(deps, log, server, routed, req.url ?? '/', socket, head, ws, !rt.config.limits.underscores_in_headers).run()
}

/** One WebSocket upgrade request, from routing to its 101 (then the tunnel) or its answer. */
class Upgrade {
  private handshake: Handshake | undefined
  /** For the access log: the firewall's decision and who authenticated (as ClientWriter has them). */
  firewall: string | undefined = undefined
  user: string | undefined = undefined
  private reserved = false
  private ended = false
  /** Body bytes of an answer the proxy wrote itself (the access log's bytes_out). */
  private sent = 0
  /** The fields sent to the client (header capture). */
  private answered: OutgoingHttpHeaders | undefined
  private readonly onClientClose = (): void => this.clientGone()

  constructor(
    private readonly deps: UpgradeDeps,
    private readonly log: UpgradeLog,
    private readonly listener: object,
    private readonly routed: RoutedRequest,
    /** The request target as sent (the access log's). */
    private readonly target: string,
    private readonly socket: Duplex,
    /** Bytes the client sent after its request head (frames sent early). */
    private readonly head: Buffer,
    private readonly ws: RouteWebSocketConfig,
    private readonly dropUnderscores: boolean
  ) {}

  run(): void {
    const { deps, routed } = this
    const route = routed.route.name
    deps.metrics.hot.inFlight.get(route).inc()
    if (routed.split !== undefined) recordSplitAssignment(deps.metrics, routed.split, routed.id, this.log)
    // The route's access rules, as for any request (security/firewall.ts), before any slot or member.
    const fw = routed.route.firewall
    if (fw !== undefined) {
      const d = fw.check(routed)
      if (!(d instanceof Promise)) {
        if (this.screened(d)) this.admitted()
        return
      }
      this.socket.on('close', this.onClientClose)
      d.then((x) => {
        this.socket.off('close', this.onClientClose)
        if (!this.ended && this.screened(x)) this.admitted()
      }, (err: unknown) => {
        this.socket.off('close', this.onClientClose)
        if (this.ended) return
        this.log.info({ reqId: routed.id, route, err: (err as Error).message }, 'access check failed')
        this.answerError(EDGE_ERRORS.internal, undefined)
        this.done(500, 'error', undefined)
      })
      return
    }
    this.admitted()
  }

  /** Notes the firewall's decision; answers a refusal. True when the upgrade may go on. */
  private screened(d: FirewallDecision): boolean {
    this.firewall = d.label
    this.user = d.user
    if (d.admit) return true
    const hsts = this.deps.listener?.hsts
    writeHead(this.socket, d.status, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(d.body),
      date: new Date().toUTCString(),
      via: `1.1 ${VIA}`,
      'x-request-id': this.routed.id,
      ...d.headers,
      ...(hsts === undefined ? undefined : { 'strict-transport-security': hsts }),
      connection: 'close'
    })
    endAndLinger(this.socket, d.body)
    this.done(d.status, 'denied', undefined)
    return false
  }

  /** Past the access rules: the drain check, a tunnel slot, then the handshake with a member. */
  private admitted(): void {
    const { deps, routed } = this
    const route = routed.route.name
    // Draining: a tunnel opened now would only be cut at the drain deadline. The client is told
    // to reconnect (Connection: close), which takes it to a listener that is not stopping.
    if (isDraining(this.listener)) {
      const e = EDGE_ERRORS.shutting_down
      this.answerError(e, undefined)
      this.done(e.status, 'draining', undefined)
      return
    }
    if (!deps.tunnels.reserve(route, this.ws.max_tunnels)) {
      const e = EDGE_ERRORS.tunnel_limit
      this.answerError(e, `route ${route}: too many WebSocket tunnels (max_tunnels ${this.ws.max_tunnels}), retry shortly`)
      this.done(e.status, 'limit', undefined)
      return
    }
    this.reserved = true
    this.socket.on('close', this.onClientClose)
    this.handshake = new Handshake(deps, routed, (m) => this.upstreamHeaders(m), (r) => this.onResult(r))
    this.handshake.start()
  }

  /** The fields a member receives: those of a forwarded request, plus the upgrade's own. */
  private upstreamHeaders(member: Member): Record<string, string | string[]> {
    const r = this.routed
    const h = upstreamRequestHeaders(r.headers, {
      clientIp: r.clientIp,
      trustedPeer: r.trustedPeer,
      peerIp: r.peerIp,
      // http or https as for any request; not ws/wss (Traefik's choice), which frameworks that
      // read X-Forwarded-Proto to decide "secure" do not recognise.
      proto: r.scheme,
      originalHost: r.authority,
      upstreamHost: r.pool.preserveHost ? r.authority : member.host,
      via: `1.1 ${VIA}`,
      requestId: r.id,
      variant: r.split?.variant,
      bodyless: true,
      dropUnderscores: this.dropUnderscores
    })
    // Hop-by-hop, so stripped above; this hop needs them (RFC 6455 section 4.1). Sec-WebSocket-*
    // are end-to-end fields and were kept.
    h.connection = 'Upgrade'
    h.upgrade = 'websocket'
    return h
  }

  private onResult(r: HandshakeResult): void {
    if (this.ended) {
      if (r.kind === 'upgraded') { r.socket.destroy(); r.member.inFlight-- } else if (r.kind === 'answered') r.response.destroy()
      return
    }
    this.socket.off('close', this.onClientClose)
    if (r.kind === 'failed') {
      this.releaseSlot()
      this.answerError(r.error, r.error.status >= 500 ? poolDetail(this.routed.pool.name, r.error) : undefined)
      this.done(r.error.status, 'error', undefined)
    } else if (r.kind === 'answered') {
      this.releaseSlot()
      this.relayAnswer(r.response)
      this.done(r.response.statusCode ?? 502, 'refused_by_member', r.member)
    } else {
      this.openTunnel(r.member, r.response, r.socket, r.head)
    }
  }

  /** The client left before the member answered. */
  private clientGone(): void {
    if (this.ended) return
    this.handshake?.cancel()
    this.releaseSlot()
    this.done(499, 'client_gone', undefined)
  }

  private releaseSlot(): void {
    if (!this.reserved) return
    this.reserved = false
    this.deps.tunnels.release(this.routed.route.name)
  }

  /** The request's metrics and access log line, once its answer (or the 101) is written. */
  private done(status: number, result: TunnelResult, member: Member | undefined): void {
    if (this.ended) return
    this.ended = true
    const { metrics, tunnels } = this.deps
    const r = this.routed
    const pool = r.pool.name
    const code = String(status)
    const seconds = (performance.now() - r.start) / 1000
    metrics.hot.requests.get(r.route.name, pool, 'GET', code).inc()
    metrics.hot.requestDuration.get(r.route.name, pool).observe(seconds)
    metrics.hot.inFlight.get(r.route.name).dec()
    tunnels.metrics.total.get(r.route.name, pool, result).inc()
    // A tunnel's line is written when it closes, with the bytes relayed each way (closed()).
    if (status !== 101) this.deps.accessLog?.upgrade({ routed: r, target: this.target, member: member?.name, status, bytesUp: 0, bytesDown: this.sent, responseHeaders: this.answered, user: this.user, firewall: this.firewall })
  }

  private answerError(error: ProxyError, detail: string | undefined): void {
    const body = errorBody(error, detail)
    const hsts = this.deps.listener?.hsts
    this.sent = Buffer.byteLength(body)
    writeHead(this.socket, error.status, this.answered = {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      date: new Date().toUTCString(),
      via: `1.1 ${VIA}`,
      'x-request-id': this.routed.id,
      ...error.headers,
      ...(hsts === undefined ? undefined : { 'strict-transport-security': hsts }),
      connection: 'close'
    })
    endAndLinger(this.socket, body)
  }

  private clientHeaders(from: IncomingHttpHeaders): OutgoingHttpHeaders {
    const split = this.routed.split
    const h = clientResponseHeaders(from as Record<string, string | string[] | undefined>, `1.1 ${VIA}`, this.routed.id, split?.variant, split?.setCookie)
    const hsts = this.deps.listener?.hsts
    if (hsts !== undefined) h['strict-transport-security'] = hsts
    return h
  }

  /**
   * A member's answer other than 101 (403, 404, 426...) reaches the client as it is, minus
   * hop-by-hop fields; the connection closes after it (its state after a refused upgrade is not
   * worth reasoning about). A body of unknown length goes chunked, so a cut one shows.
   */
  private relayAnswer(res: IncomingMessage): void {
    const socket = this.socket
    const status = res.statusCode ?? 502
    const h = this.clientHeaders(res.headers)
    h.connection = 'close'
    const bodyless = status === 204 || status === 304
    const chunked = !bodyless && (res.headers['content-length'] === undefined || res.headers['transfer-encoding'] !== undefined)
    if (bodyless || chunked) delete h['content-length']
    if (chunked) h['transfer-encoding'] = 'chunked'
    this.answered = h
    writeHead(socket, status, h)
    if (bodyless) {
      res.resume()
      endAndLinger(socket)
      return
    }
    res.on('data', (chunk: Buffer) => {
      // write() queues even when it returns false: the last call tells whether to pause.
      let ok: boolean
      if (chunked) {
        socket.write(`${chunk.length.toString(16)}\r\n`)
        socket.write(chunk)
        ok = socket.write('\r\n')
      } else {
        ok = socket.write(chunk)
      }
      if (!ok) res.pause()
    })
    socket.on('drain', () => res.resume())
    res.on('end', () => endAndLinger(socket, chunked ? '0\r\n\r\n' : undefined))
    // A body cut midway is cut for the client too, never ended cleanly.
    res.on('error', () => socket.destroy())
    res.on('aborted', () => socket.destroy())
    socket.on('close', () => res.destroy())
    // The client may leave meanwhile: read (and drop) what it sends, so its FIN is seen.
    socket.on('end', () => { res.destroy(); socket.destroy() })
    socket.resume()
    // A member that stops sending its answer is cut like any stalled body (timeouts.request_ms).
    const stallMs = this.routed.pool.requestTimeoutMs
    if (stallMs > 0) res.socket.setTimeout(stallMs, () => { res.destroy(); socket.destroy() })
  }

  private openTunnel(member: Member, res: IncomingMessage, upstream: Socket, upstreamHead: Buffer): void {
    const socket = this.socket
    const r = this.routed
    if (socket.destroyed) {
      // The client went while the member answered (a paused socket reports it late).
      upstream.destroy()
      member.inFlight--
      this.releaseSlot()
      this.done(499, 'client_gone', member)
      return
    }
    const h = this.clientHeaders(res.headers)
    delete h['content-length']
    // The member's Sec-WebSocket-Accept/-Protocol/-Extensions pass; Connection and Upgrade are ours.
    this.answered = { connection: 'Upgrade', upgrade: res.headers.upgrade ?? 'websocket', ...h }
    writeHead(socket, 101, this.answered)
    this.done(101, 'opened', member)
    const tunnels = this.deps.tunnels
    const tunnel = new Tunnel(socket, upstream, {
      id: r.id,
      route: r.route.name,
      pool: r.pool.name,
      member,
      listener: this.listener,
      path: r.path,
      clientIp: r.clientIp
    }, (t, reason) => this.closed(t, reason))
    tunnels.opened(tunnel)
    this.reserved = false // the tunnel holds the slot now; the registry frees it when it closes
    socket.off('error', destroySelf)
    // Bytes either side sent right behind its head belong to the tunnel.
    if (upstreamHead.length > 0) { tunnel.down += upstreamHead.length; socket.write(upstreamHead) }
    if (this.head.length > 0) { tunnel.up += this.head.length; upstream.write(this.head) }
    tunnel.start(this.ws.idle_timeout_ms)
  }

  private closed(t: Tunnel, reason: TunnelCloseReason): void {
    t.info.member.inFlight--
    this.deps.tunnels.closed(t, reason)
    const i = t.info
    this.deps.accessLog?.upgrade({ routed: this.routed, target: this.target, member: i.member.name, status: 101, bytesUp: t.up, bytesDown: t.down, responseHeaders: this.answered, user: this.user, firewall: this.firewall })
    this.log.debug({ reqId: i.id, route: i.route, pool: i.pool, member: i.member.name, path: i.path, client: i.clientIp, reason, seconds: Math.round(performance.now() - t.openedAt) / 1000, bytes_up: t.up, bytes_down: t.down }, 'tunnel closed')
  }
}

/** RFC 9112 section 6.3: the request declares a body. */
function declaresBody(h: IncomingHttpHeaders): boolean {
  return (h['content-length'] !== undefined && h['content-length'] !== '0') || h['transfer-encoding'] !== undefined
}

/** Back to the normal request path, without the Upgrade (without-upgrade.ts). */
function handBack(server: object, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.off('error', destroySelf)
  serveWithoutUpgrade(server, req, socket, head)
}

/**
 * Writes a status line and fields. Values come from Node's parsers or from us; a field Node
 * would refuse to send is dropped rather than written (no response splitting).
 */
function writeHead(socket: Duplex, status: number, headers: OutgoingHttpHeaders): void {
  let text = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`
  for (const name in headers) {
    const v = headers[name]
    if (v === undefined) continue
    for (const one of Array.isArray(v) ? v : [v]) {
      const value = String(one)
      try {
        validateHeaderName(name)
        validateHeaderValue(name, value)
      } catch {
        continue
      }
      text += `${name}: ${value}\r\n`
    }
  }
  socket.write(`${text}\r\n`, 'latin1')
}

/**
 * Ends an answer that closes the connection. What the client still sends is read and dropped,
 * so closing does not reset the answer away before the client read it (nginx's lingering
 * close); a client that does not close within LINGER_MS is cut.
 */
function endAndLinger(socket: Duplex, last?: string): void {
  socket.end(last)
  socket.resume()
  const s = socket as Partial<Socket>
  if (typeof s.setTimeout === 'function') s.setTimeout(LINGER_MS, () => socket.destroy())
}
const LINGER_MS = 2000

function destroySelf(this: Duplex): void {
  this.destroy()
}
