/**
 * Every answer the proxy writes itself comes from one table (DESIGN.md habit 6, as fastify's
 * lib/errors.js and undici's lib/core/errors.js): status, a short plain body, the metric label
 * it is counted under, and whether the connection closes after it. Upstream failures are
 * classified here too: refused/reset -> 502, none available -> 503, timeout -> 504.
 */
import { STATUS_CODES } from 'node:http'

export interface ProxyError {
  /** The metric label (switchyard_unrouted_requests_total reason, or upstream error kind). */
  readonly name: string
  readonly status: number
  /** One short human sentence, safe to show a client (no addresses, no stack). */
  readonly reason: string
  /** The connection cannot carry another request after this answer (framing faults, unread bodies). */
  readonly close: boolean
  /** Extra fields of the answer (Allow, Retry-After). */
  readonly headers?: Readonly<Record<string, string>>
}

const ALLOW = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'

function e(name: string, status: number, reason: string, close = false, headers?: Record<string, string>): ProxyError {
  return Object.freeze({ name, status, reason, close, headers })
}

/** The proxy's own answers to a request it will not (or can no longer) forward. */
export const EDGE_ERRORS = {
  bad_request: e('bad_request', 400, 'malformed request', true),
  bad_framing: e('bad_framing', 400, 'Transfer-Encoding in an HTTP/1.0 request', true),
  bad_host: e('bad_host', 400, 'missing, repeated or invalid Host header'),
  bad_path: e('bad_path', 400, 'unsupported request target'),
  body_incomplete: e('body_incomplete', 400, 'request body ended early', true),
  no_route: e('no_route', 404, 'no route matches this host and path'),
  method_not_allowed: e('method_not_allowed', 405, 'method is not proxied', false, { allow: ALLOW }),
  body_timeout: e('body_timeout', 408, 'the request body did not arrive in time', true),
  body_too_large: e('body_too_large', 413, 'request body too large', true),
  too_many_fields: e('too_many_fields', 431, 'too many header fields', true),
  header_too_large: e('header_too_large', 431, 'request header too large', true),
  request_timeout: e('request_timeout', 408, 'the request did not arrive in time', true),
  internal: e('internal', 500, 'internal error'),
  not_implemented: e('not_implemented', 501, 'method is not supported', true),
  pool_saturated: e('pool_saturated', 503, 'too many requests in flight, retry shortly', false, { 'retry-after': '1' }),
  overloaded: e('overloaded', 503, 'the proxy is overloaded, retry shortly', false, { 'retry-after': '1' }),
  shutting_down: e('shutting_down', 503, 'the proxy is shutting down, retry on a new connection', true, { 'retry-after': '1' }),
  tunnel_limit: e('tunnel_limit', 503, 'too many WebSocket tunnels on this route, retry shortly', true, { 'retry-after': '1' }),
  bad_version: e('bad_version', 505, 'HTTP version not supported', true)
} as const

export type UpstreamErrorKind =
  | 'refused'
  | 'reset'
  | 'connect_timeout'
  | 'timeout'
  | 'dns'
  | 'protocol'
  | 'no_member'
  | 'other'

export interface ClassifiedError extends ProxyError {
  readonly name: UpstreamErrorKind
  /** Alias of name, kept for log fields and metric labels. */
  readonly kind: UpstreamErrorKind
  readonly status: 502 | 503 | 504
}

function u(kind: UpstreamErrorKind, status: 502 | 503 | 504, reason: string): ClassifiedError {
  return Object.freeze({ name: kind, kind, status, reason, close: false })
}

/** Upstream failures, as the attempt loop records them and the client sees them. */
export const UPSTREAM_ERRORS = {
  refused: u('refused', 502, 'upstream refused the connection'),
  unreachable: u('refused', 502, 'upstream host unreachable'),
  reset: u('reset', 502, 'upstream reset the connection'),
  closed: u('reset', 502, 'upstream closed the connection'),
  connect_timeout: u('connect_timeout', 504, 'timed out connecting to upstream'),
  timeout: u('timeout', 504, 'upstream did not answer in time'),
  body_timeout: u('timeout', 504, 'upstream stalled while sending its body'),
  deadline: u('timeout', 504, 'the route deadline passed'),
  dns: u('dns', 502, 'upstream host name did not resolve'),
  protocol: u('protocol', 502, 'upstream sent an invalid response'),
  too_large: u('protocol', 502, 'upstream response too large'),
  no_member: u('no_member', 503, 'no upstream available'),
  other: u('other', 502, 'upstream request failed')
} as const

const BY_CODE: Record<string, ClassifiedError> = {
  ECONNREFUSED: UPSTREAM_ERRORS.refused,
  ECONNRESET: UPSTREAM_ERRORS.reset,
  EPIPE: UPSTREAM_ERRORS.closed,
  UND_ERR_SOCKET: UPSTREAM_ERRORS.closed,
  UND_ERR_CLOSED: UPSTREAM_ERRORS.closed,
  EHOSTUNREACH: UPSTREAM_ERRORS.unreachable,
  ENETUNREACH: UPSTREAM_ERRORS.unreachable,
  UND_ERR_CONNECT_TIMEOUT: UPSTREAM_ERRORS.connect_timeout,
  UND_ERR_HEADERS_TIMEOUT: UPSTREAM_ERRORS.timeout,
  UND_ERR_BODY_TIMEOUT: UPSTREAM_ERRORS.body_timeout,
  ETIMEDOUT: UPSTREAM_ERRORS.connect_timeout,
  ENOTFOUND: UPSTREAM_ERRORS.dns,
  EAI_AGAIN: UPSTREAM_ERRORS.dns,
  UND_ERR_INFO: UPSTREAM_ERRORS.protocol,
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: UPSTREAM_ERRORS.protocol,
  UND_ERR_RES_EXCEEDED_MAX_SIZE: UPSTREAM_ERRORS.too_large
}

export const NO_MEMBER = UPSTREAM_ERRORS.no_member

/** Failures before the member saw the request: safe to retry elsewhere. Never a timeout (it would multiply load). */
export const RETRYABLE_KINDS: ReadonlySet<UpstreamErrorKind> = new Set(['refused', 'reset', 'connect_timeout', 'dns'])

interface WithCode { code?: unknown; cause?: unknown }

/** Walks the cause chain (wrapped undici errors) and maps the first known code. */
export function classifyUpstreamError(err: unknown): ClassifiedError {
  let cur: unknown = err
  for (let depth = 0; depth < 5 && cur != null && typeof cur === 'object'; depth++) {
    const code = (cur as WithCode).code
    // undici's HTTPParserError has no code when llhttp gave none.
    if ((cur as { name?: unknown }).name === 'HTTPParserError') return UPSTREAM_ERRORS.protocol
    if (typeof code === 'string') {
      const hit = BY_CODE[code]
      if (hit !== undefined) return hit
      if (code.startsWith('HPE_')) return UPSTREAM_ERRORS.protocol
    }
    cur = (cur as WithCode).cause
  }
  return UPSTREAM_ERRORS.other
}

/** The short plain body of an answer: "502 Bad Gateway: pool web: upstream refused the connection". */
export function errorBody(err: ProxyError, detail?: string): string {
  return `${err.status} ${STATUS_CODES[err.status] ?? 'Error'}: ${detail === undefined ? err.reason : detail}\n`
}

/** The detail of an upstream failure's answer: "pool web: upstream refused the connection". */
export function poolDetail(pool: string, e: ProxyError): string {
  return `pool ${pool}: ${e.reason}`
}
