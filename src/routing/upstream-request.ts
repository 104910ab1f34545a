import type { Readable } from 'node:stream'
import type { Member } from '../upstreams/member.js'
import type { UpstreamRequest } from './attempt-loop.js'
import { upstreamRequestHeaders } from './forwarding-headers.js'
import type { RoutedRequest } from './request-edge.js'
import { VIA } from './client-writer.js'

const BODYLESS = new Set(['GET', 'HEAD'])

/** The fields a member receives for a routed request (forwarding headers, Host per pool). */
export function upstreamHeaders(routed: RoutedRequest, member: Member, dropUnderscores: boolean): Record<string, string | string[]> {
  const h = upstreamRequestHeaders(routed.headers, {
    clientIp: routed.clientIp,
    trustedPeer: routed.trustedPeer,
    peerIp: routed.peerIp,
    proto: routed.scheme,
    originalHost: routed.authority,
    upstreamHost: routed.pool.preserveHost ? routed.authority : member.host,
    via: `${routed.httpVersion} ${VIA}`,
    requestId: routed.id,
    variant: routed.split?.variant,
    bodyless: BODYLESS.has(routed.method),
    dropUnderscores
  })
  routed.forward?.rewrite(h)
  return h
}

/** The exchange of a plain forwarded request: the client's method, fields and body. */
export function forwardRequest(routed: RoutedRequest, body: Buffer | Readable | null, dropUnderscores: boolean): UpstreamRequest {
  // A streamed body cannot be replayed; a buffered one (or none) can, for the route's retry methods.
  const retryable = routed.route.retries.attempts > 0 && routed.route.retryMethods.has(routed.method) && (body === null || Buffer.isBuffer(body))
  return {
    routed,
    method: routed.method,
    headers: (m) => upstreamHeaders(routed, m, dropUnderscores),
    body: BODYLESS.has(routed.method) ? null : body,
    retryable
  }
}
