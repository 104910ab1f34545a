/**
 * The request edge: turns a parsed request into a routed target or a named error. Pure: no
 * sockets, no Fastify, no metrics (the caller counts what it returns), so every rule here is
 * unit-testable on plain values.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { BlockList } from 'node:net'
import { EDGE_ERRORS, type ProxyError } from '../errors.js'
import { readCookie } from '../balancing/cookie.js'
import type { AssignmentSource } from '../balancing/split.js'
import type { Pool } from '../upstreams/pool.js'
import { normalizePath } from './normalize-path.js'
import { normalizeAuthority } from './route-table.js'
import type { RouteRuntime, Runtime } from './runtime.js'

/** What the edge reads of a request, as Node's parser left it. */
export interface EdgeInput {
  readonly method: string
  /** The request target as sent (origin-form or absolute-form). */
  readonly url: string
  readonly headers: IncomingHttpHeaders
  readonly rawHeaders: readonly string[]
  readonly versionMajor: number
  readonly versionMinor: number
  /** The peer's address (IPv4-mapped IPv6 is unwrapped here). */
  readonly peer: string | undefined
  /** The listener's scheme: X-Forwarded-Proto upstream. */
  readonly scheme: 'http' | 'https'
  /** The request came over HTTP/2 (not an HTTP/1 request line claiming version 2.0). */
  readonly http2?: boolean
  /** HTTP/2: the request's HEADERS ended the stream (it has no body). */
  readonly endStream?: boolean
  /** HTTP/2: limits.max_header_bytes (Node's HTTP/1 parser enforces it for HTTP/1.x). */
  readonly maxHeaderBytes?: number
  readonly id: string
  /** performance.now() when the request arrived. */
  readonly start: number
}

/** A routed request: everything later stages need, fixed once routing is done. */
export interface RoutedRequest {
  readonly id: string
  readonly start: number
  readonly method: string
  readonly headers: IncomingHttpHeaders
  /** "1.1", "1.0" or "2", for Via. */
  readonly httpVersion: string
  /** The scheme the client used to reach us (the listener's). */
  readonly scheme: 'http' | 'https'
  /** The normalised host (no port): what was routed on. */
  readonly host: string
  /** The normalised authority (port kept, RFC 9112 section 3.2.2): cache key and upstream Host. */
  readonly authority: string
  /** The normalised path: what was routed, cache-keyed and sent upstream. */
  readonly path: string
  /** The raw query string including '?', or ''. */
  readonly query: string
  readonly route: RouteRuntime
  readonly pool: Pool
  /** The split variant chosen, its Set-Cookie (when newly drawn), and how it was chosen. */
  readonly split: RoutedSplit | undefined
  readonly clientIp: string
  readonly peerIp: string
  /** The peer is in trusted_proxies: its forwarding headers are kept and appended to. */
  readonly trustedPeer: boolean
  /** Declared Content-Length (-1 for a chunked body, 0 for none). */
  readonly bodyLength: number
  /** Forward proxy requests only (src/forward): adjusts the fields sent to the origin. */
  readonly forward?: { readonly rewrite: (headers: Record<string, string | string[]>) => void }
}

/** A request's split assignment (balancing/split.ts). */
export interface RoutedSplit {
  readonly name: string
  readonly variant: string
  /** The arm's index in its split (variants in order, then the holdout): its window slot. */
  readonly arm: number
  readonly source: AssignmentSource
  readonly setCookie: string | undefined
  /** A first assignment (or a changed one): the proxy logs an exposure. */
  readonly exposure: boolean
  readonly keyHash: number
  readonly previous: string | undefined
}

export type EdgeResult =
  | { readonly ok: true; readonly routed: RoutedRequest }
  | { readonly ok: false; readonly error: ProxyError; readonly detail?: string; readonly route?: RouteRuntime }

/** Header fields a request may carry (Node silently drops those beyond its maxHeadersCount). */
export const MAX_FIELDS = 200
const ABSOLUTE_FORM = /^(https?):\/\/([^/?#]*)(.*)$/i
const BODYLESS = new Set(['GET', 'HEAD'])

function fail(error: ProxyError, detail?: string, route?: RouteRuntime): EdgeResult {
  return { ok: false, error, detail, route }
}

/** Routes a request: framing and target checks, host and path normalisation, route, client address, split. */
export function routeRequest(req: EdgeInput, rt: Runtime): EdgeResult {
  const method = req.method
  if (method === 'TRACE' || method === 'CONNECT') return fail(EDGE_ERRORS.method_not_allowed, `${method} is not proxied`)
  const h2 = req.http2 === true
  if (req.versionMajor !== 1 && !h2) return fail(EDGE_ERRORS.bad_version)
  // RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message is a framing fault.
  if (req.versionMinor === 0 && req.headers['transfer-encoding'] !== undefined) return fail(EDGE_ERRORS.bad_framing)
  if (req.rawHeaders.length > MAX_FIELDS * 2) return fail(EDGE_ERRORS.too_many_fields, `more than ${MAX_FIELDS} header fields`)

  let url = req.url
  let hostHeader = req.headers.host
  if (h2) {
    // nghttp2 treats SETTINGS_MAX_HEADER_LIST_SIZE as advisory: the HTTP/1.1 head limit, enforced here.
    if (req.maxHeaderBytes !== undefined && fieldBytes(req.rawHeaders) > req.maxHeaderBytes) return fail(EDGE_ERRORS.header_too_large)
    // RFC 9113 section 8.3.1: :authority stands for Host; both present and different is malformed.
    const authority = req.headers[':authority']
    if (typeof authority === 'string') {
      if (hostHeader !== undefined && hostHeader !== authority) return fail(EDGE_ERRORS.bad_host, ':authority and Host differ')
      hostHeader = authority
    }
  }
  if (url.charCodeAt(0) !== 47) {
    // absolute-form (RFC 9112 section 3.2.2): the target's authority replaces Host. Parsed by
    // hand, so the path gets the same normalisation rules as origin-form (a URL parser would
    // quietly turn backslashes into slashes and clamp dot segments).
    const abs = ABSOLUTE_FORM.exec(url)
    if (abs === null || abs[2].includes('@')) return fail(EDGE_ERRORS.bad_path)
    hostHeader = abs[2]
    url = abs[3] === '' ? '/' : abs[3].charCodeAt(0) === 63 ? `/${abs[3]}` : abs[3]
  }
  const auth = normalizeAuthority(hostHeader)
  if (auth === undefined || hasDuplicateHost(req.rawHeaders)) return fail(EDGE_ERRORS.bad_host)

  const q = url.indexOf('?')
  const n = normalizePath(q < 0 ? url : url.slice(0, q))
  if (!n.ok) return fail(EDGE_ERRORS.bad_path, n.reason)

  const route = rt.table.match(auth.host, n.path, method, req.headers)
  if (route === undefined) return fail(EDGE_ERRORS.no_route)

  const len = req.headers['content-length']
  // RFC 9112 section 6.3: without Content-Length or Transfer-Encoding a request has no body.
  // HTTP/2 (RFC 9113 section 8.1): a body unless the HEADERS frame ended the stream.
  const unframed = h2 ? req.endStream !== true : req.headers['transfer-encoding'] !== undefined
  const bodyLength = len !== undefined ? Number(len) : unframed && !BODYLESS.has(method) ? -1 : 0
  if (bodyLength > route.maxBodyBytes) return fail(EDGE_ERRORS.body_too_large, `request body exceeds ${route.maxBodyBytes} bytes`, route)

  const peer = stripIpv4Mapped(req.peer)
  const client = rt.trusted === undefined ? { ip: peer, trusted: false } : clientAddress(peer, rt.trusted, req.headers['x-forwarded-for'])

  let pool = route.pool
  let split: RoutedRequest['split']
  if (route.split !== undefined) {
    const s = route.split
    const h = req.headers
    const a = s.assign(
      h[s.overrideHeader] as string | undefined,
      readCookie(h.cookie, s.cookieName),
      s.stickyHeader === undefined ? undefined : (h[s.stickyHeader] as string | undefined)
    )
    pool = a.arm.target
    split = { name: s.name, variant: a.arm.name, arm: a.arm.index, source: a.source, setCookie: a.setCookie, exposure: a.exposure, keyHash: a.keyHash, previous: a.previous }
  }

  return {
    ok: true,
    routed: {
      id: req.id,
      start: req.start,
      method,
      headers: req.headers,
      httpVersion: h2 ? '2' : req.versionMinor === 0 ? '1.0' : '1.1',
      scheme: req.scheme,
      host: auth.host,
      authority: auth.authority,
      path: n.path,
      query: q < 0 ? '' : url.slice(q),
      route,
      pool: pool as Pool,
      split,
      clientIp: client.ip,
      peerIp: peer,
      trustedPeer: client.trusted,
      bodyLength
    }
  }
}

/** Bytes of the field names and values (what an HTTP/1.1 head would carry, less its punctuation). */
function fieldBytes(raw: readonly string[]): number {
  let n = 0
  for (let i = 0; i < raw.length; i++) n += raw[i].length
  return n
}

function stripIpv4Mapped(ip: string | undefined): string {
  if (ip === undefined) return ''
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip
}

/** The client address: the peer, or with trusted proxies the right-most untrusted X-Forwarded-For hop. */
function clientAddress(peer: string, trusted: BlockList, xff: string | string[] | undefined): { ip: string; trusted: boolean } {
  if (!trusted.check(peer, peer.includes(':') ? 'ipv6' : 'ipv4')) return { ip: peer, trusted: false }
  if (xff === undefined) return { ip: peer, trusted: true }
  const hops = (Array.isArray(xff) ? xff.join(',') : xff).split(',')
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i].trim()
    if (hop === '') continue
    if (!trusted.check(hop, hop.includes(':') ? 'ipv6' : 'ipv4')) return { ip: hop, trusted: true }
  }
  return { ip: peer, trusted: true }
}

/** RFC 9112 section 3.2: exactly one Host field. Node keeps the first of several; we refuse. */
function hasDuplicateHost(raw: readonly string[]): boolean {
  let seen = false
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (seen) return true
      seen = true
    }
  }
  return false
}
