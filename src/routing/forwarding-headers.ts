import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'

/**
 * Hop-by-hop fields (RFC 9110 section 7.6.1) plus fields we never pass on. Removed in both
 * directions, together with every field the Connection header names.
 */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'http2-settings'
])

/** Request fields that let a client rewrite the URL or method an origin acts on (cache deception). */
const REQUEST_ONLY_STRIP = new Set([
  'x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x-http-method', 'x-method-override',
  'x-forwarded-prefix', 'x-forwarded-port', 'x-forwarded-server', 'x-host', 'x-forwarded-scheme', 'x-real-ip',
  // 100-continue is negotiated between the client and us (Node answers it); not passed on.
  'expect'
])

/** Fields a trusted downstream proxy may set and an untrusted client may not. */
const FORWARDING = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded'])

function connectionNamed(value: string | string[] | number | undefined): Set<string> | undefined {
  if (value === undefined) return undefined
  // What nearly every message carries: names nothing beyond the fields always removed.
  if (value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'Close') return undefined
  const s = Array.isArray(value) ? value.join(',') : String(value)
  const out = new Set<string>()
  for (const token of s.split(',')) {
    const t = token.trim().toLowerCase()
    if (t !== '' && t !== 'close' && t !== 'keep-alive') out.add(t)
  }
  return out.size > 0 ? out : undefined
}

export interface ForwardingFacts {
  clientIp: string
  /** The immediate peer is in trusted_proxies: keep its forwarding headers and append to them. */
  trustedPeer: boolean
  peerIp: string
  proto: string
  /** The Host header as the client sent it. */
  originalHost: string
  /** Host to send upstream. */
  upstreamHost: string
  via: string
  requestId: string
  variant: string | undefined
  /** Drop Content-Length / Transfer-Encoding because no body is forwarded (GET, HEAD). */
  bodyless: boolean
  /**
   * Drop fields whose names contain '_' (nginx's underscores_in_headers off): many frameworks
   * read X_Forwarded_For as X-Forwarded-For, so such a field would slip past the forwarding rules.
   */
  dropUnderscores: boolean
}

/** Builds the header set an upstream receives from the client's headers. */
export function upstreamRequestHeaders(src: IncomingHttpHeaders, f: ForwardingFacts): Record<string, string | string[]> {
  const named = connectionNamed(src.connection)
  const out: Record<string, string | string[]> = {}
  for (const k in src) {
    // HTTP/2 pseudo-header fields (':authority', ':path', ...) are the request line, not fields.
    if (k.charCodeAt(0) === 58 || HOP_BY_HOP.has(k) || REQUEST_ONLY_STRIP.has(k) || k.startsWith('proxy-') || (named !== undefined && named.has(k))) continue
    if (FORWARDING.has(k) && !f.trustedPeer) continue
    if (f.bodyless && k === 'content-length') continue
    if (f.dropUnderscores && k.includes('_')) continue
    const v = src[k]
    if (v !== undefined) out[k] = v
  }
  const xff = f.trustedPeer ? src['x-forwarded-for'] : undefined
  out['x-forwarded-for'] = xff === undefined ? f.peerIp : `${Array.isArray(xff) ? xff.join(', ') : xff}, ${f.peerIp}`
  if (!f.trustedPeer || out['x-forwarded-proto'] === undefined) out['x-forwarded-proto'] = f.proto
  if (!f.trustedPeer || out['x-forwarded-host'] === undefined) out['x-forwarded-host'] = f.originalHost
  out['x-real-ip'] = f.clientIp
  out.host = f.upstreamHost
  const via = src.via
  out.via = via === undefined ? f.via : `${via}, ${f.via}`
  out['x-request-id'] = f.requestId
  if (f.variant !== undefined) out['x-switchyard-variant'] = f.variant
  return out
}

/** Builds the header set a client receives from an upstream's response headers. */
export function clientResponseHeaders(
  src: Record<string, string | string[] | undefined>,
  via: string,
  requestId: string,
  variant: string | undefined,
  setCookie: string | undefined
): OutgoingHttpHeaders {
  const named = connectionNamed(src.connection)
  const out: OutgoingHttpHeaders = {}
  for (const k in src) {
    if (HOP_BY_HOP.has(k) || k.startsWith('proxy-') || (named !== undefined && named.has(k))) continue
    const v = src[k]
    if (v !== undefined) out[k] = v
  }
  const upstreamVia = src.via
  out.via = upstreamVia === undefined ? via : `${Array.isArray(upstreamVia) ? upstreamVia.join(', ') : upstreamVia}, ${via}`
  out['x-request-id'] = requestId
  if (variant !== undefined) out['x-switchyard-variant'] = variant
  if (setCookie !== undefined) {
    const prev = out['set-cookie']
    out['set-cookie'] = prev === undefined ? [setCookie] : Array.isArray(prev) ? [...prev, setCookie] : [String(prev), setCookie]
  }
  return out
}
