import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http'
import { DEFAULT_REDACT, type AccessLogConfig } from '../config/schema.js'
import type { ClientWriter } from '../routing/client-writer.js'
import type { RoutedRequest } from '../routing/request-edge.js'
import { emptyRecord, type AccessRecord } from './access-record.js'
import { openAccessLogSink, type AccessLogSink } from './access-log-sink.js'
import { globalCapture, type HeaderCapture } from './header-capture.js'
import { createLineFormatter, type LineFormatter } from './line-format.js'

/** The pino-style calls the access log makes on the process logger. */
export interface AccessLogLog {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

/** What an upgrade's line needs when its tunnel closes (upgrade.ts). */
export interface TunnelFacts {
  readonly routed: RoutedRequest
  readonly target: string
  readonly member: string | undefined
  readonly status: number
  readonly bytesUp: number
  readonly bytesDown: number
  readonly responseHeaders: OutgoingHttpHeaders | undefined
  /** Who the firewall authenticated, and its decision (security/firewall.ts). */
  readonly user?: string
  readonly firewall?: string
}

/**
 * The access log (README "Access log"): one line per answered request, in the configured
 * format, to stdout or a file. Built only when `logging.access_log.enabled`: with the log off
 * nothing exists and the pipeline pays one `undefined` check per request. Every entry point
 * fills the one record this log owns and formats it at once, so a line costs one string.
 */
export class AccessLog {
  private readonly record: AccessRecord = emptyRecord()
  private readonly format: LineFormatter
  private readonly redact: ReadonlySet<string>
  /** The global capture lists (a route's own lists are compiled into its RouteRuntime). */
  private readonly capture: HeaderCapture | undefined
  private warned = false

  constructor(cfg: AccessLogConfig, private readonly sink: AccessLogSink, private readonly log?: AccessLogLog) {
    this.format = createLineFormatter(cfg.format)
    // The credential fields are always redacted: a list that names others adds to them.
    this.redact = new Set([...DEFAULT_REDACT, ...cfg.redact.map((n) => n.toLowerCase())])
    this.capture = globalCapture(cfg)
  }

  /**
   * An HTTP request whose response closed: forwarded, served from the cache, or refused at the
   * edge (`routed` undefined). `status` is what the client got (499 if it left first).
   */
  request(raw: IncomingMessage, writer: ClientWriter, routed: RoutedRequest | undefined, id: string, status: number, start: number): void {
    const route = routed?.route.accessLog
    if (route !== undefined && !route.enabled) return
    const r = this.record
    r.time = Date.now()
    r.client = routed?.clientIp ?? peerAddress(raw)
    r.user = writer.user
    r.method = raw.method ?? ''
    r.target = raw.url ?? ''
    r.protocol = protocolText(raw.httpVersion)
    r.status = status
    r.bytesIn = writer.bytesIn
    r.bytesOut = writer.bytesOut
    r.durationMs = performance.now() - start
    r.upstreamMs = writer.upstreamMs
    r.route = routed?.route.name
    r.pool = routed?.pool.name
    r.member = writer.member
    r.variant = routed?.split?.variant
    r.cache = writer.cacheStatus
    r.requestId = id
    r.firewall = writer.firewall
    r.anonymous = writer.anonymous
    r.upgrade = undefined
    r.requestHeaders = raw.headers
    r.responseHeaders = writer.responseHeaders
    r.capture = route === undefined ? this.capture : route.capture
    this.emit(r)
  }

  /**
   * An answer the proxy wrote outside the pipeline (no ClientWriter): the 405 to CONNECT, the
   * error handler's 503, the 501 to an unknown method. `id` undefined: none was given.
   */
  own(raw: IncomingMessage, id: string | undefined, status: number, bytesOut: number, durationMs: number): void {
    const r = this.record
    r.time = Date.now()
    r.client = peerAddress(raw)
    r.user = undefined
    r.method = raw.method ?? ''
    r.target = raw.url ?? ''
    r.protocol = protocolText(raw.httpVersion)
    r.status = status
    r.bytesIn = 0
    r.bytesOut = bytesOut
    r.durationMs = durationMs
    r.upstreamMs = undefined
    r.route = undefined
    r.pool = undefined
    r.member = undefined
    r.variant = undefined
    r.cache = undefined
    r.requestId = id
    r.firewall = undefined
    r.anonymous = false
    r.upgrade = undefined
    r.requestHeaders = raw.headers
    r.responseHeaders = undefined
    r.capture = this.capture
    this.emit(r)
  }

  /**
   * A WebSocket upgrade: when its tunnel closes (status 101, the bytes relayed each way, the
   * tunnel's whole life as duration), or when it was answered otherwise (no tunnel).
   */
  upgrade(t: TunnelFacts): void {
    const routed = t.routed
    const route = routed.route.accessLog
    if (route !== undefined && !route.enabled) return
    const r = this.record
    r.time = Date.now()
    r.client = routed.clientIp
    r.user = t.user
    r.method = routed.method
    r.target = t.target
    // Upgrades are HTTP/1.1 only (upgrade.ts).
    r.protocol = 'HTTP/1.1'
    r.status = t.status
    r.bytesIn = t.bytesUp
    r.bytesOut = t.bytesDown
    r.durationMs = performance.now() - routed.start
    r.upstreamMs = undefined
    r.route = routed.route.name
    r.pool = routed.pool.name
    r.member = t.member
    r.variant = routed.split?.variant
    r.cache = undefined
    r.requestId = routed.id
    r.firewall = t.firewall
    r.anonymous = false
    r.upgrade = 'websocket'
    r.requestHeaders = routed.headers
    r.responseHeaders = t.responseHeaders
    r.capture = route === undefined ? this.capture : route.capture
    this.emit(r)
  }

  /**
   * A record filled by the caller (the forward proxy's tunnels, answers written outside the
   * pipeline): formatted and written as it is. `capture` undefined takes the global lists.
   */
  write(fill: (r: AccessRecord) => void): void {
    const r = this.record
    // Nothing of the previous line carries over into a field the caller leaves unset.
    Object.assign(r, EMPTY)
    r.time = Date.now()
    r.capture = this.capture
    fill(r)
    this.emit(r)
  }

  /** logrotate moved the file: open it again by name (SIGUSR1). */
  reopen(): void {
    // Said once the new file is open, so whoever rotated can rely on it existing.
    this.sink.reopen(() => this.log?.info({}, 'access log reopened'))
  }

  close(): Promise<void> {
    return this.sink.close()
  }

  /** Lines already written are never lost to a failing sink; its first error is logged, once. */
  onSinkError(err: Error): void {
    if (this.warned) return
    this.warned = true
    this.log?.warn({ err: err.message }, 'access log: write failed; lines may be lost until the file is reopened')
  }

  private emit(r: AccessRecord): void {
    const line = this.format(r, this.redact)
    // Drop references to the request's fields: the record outlives the request.
    r.requestHeaders = undefined
    r.responseHeaders = undefined
    this.sink.write(line)
  }
}

/** The access log for `cfg`, or undefined when it is off. Throws AccessLogPathError for a file that cannot be opened. */
export function createAccessLog(cfg: AccessLogConfig, log?: AccessLogLog): AccessLog | undefined {
  if (!cfg.enabled) return undefined
  const holder: { log?: AccessLog } = {}
  const sink = openAccessLogSink(cfg.path ?? undefined, (err) => holder.log?.onSinkError(err))
  holder.log = new AccessLog(cfg, sink, log)
  return holder.log
}

const EMPTY: Readonly<AccessRecord> = Object.freeze(emptyRecord())

function peerAddress(raw: IncomingMessage): string {
  const ip = raw.socket?.remoteAddress ?? ''
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip
}

/** $server_protocol's text without a string built per request. */
function protocolText(version: string): string {
  switch (version) {
    case '1.1': return 'HTTP/1.1'
    case '2.0': return 'HTTP/2.0'
    case '1.0': return 'HTTP/1.0'
    default: return `HTTP/${version}`
  }
}
