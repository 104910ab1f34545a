import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import type { HeaderCapture } from './header-capture.js'

/**
 * One access log line's facts. An AccessLog fills one record it owns and formats it at once
 * (formatting is synchronous), so a logged request allocates no record of its own.
 */
export interface AccessRecord {
  /** Date.now() when the exchange ended (nginx logs the time a request ends, too). */
  time: number
  /** The client address (after trusted_proxies when the request was routed). */
  client: string
  /** Who the request authenticated as (forward proxy or route Basic/JWT), if anyone. */
  user: string | undefined
  method: string
  /** The request target as the client sent it. */
  target: string
  /** "HTTP/1.1", "HTTP/1.0", "HTTP/2.0". */
  protocol: string
  /** 499: the client went away before the answer was complete (nginx's code). */
  status: number
  /** Request body bytes read from the client (for a WebSocket: client -> member bytes). */
  bytesIn: number
  /** Response body bytes written to the client (for a WebSocket: member -> client bytes). */
  bytesOut: number
  /** From the request's arrival to the end of its answer (for a WebSocket: to the tunnel's close). */
  durationMs: number
  /** Time to the member's response head on the last try; undefined when no member answered. */
  upstreamMs: number | undefined
  route: string | undefined
  pool: string | undefined
  member: string | undefined
  variant: string | undefined
  /** X-Cache's value: HIT, MISS, STALE, REVALIDATED, BYPASS... */
  cache: string | undefined
  requestId: string | undefined
  /** The firewall's decision, e.g. "allow", "deny:<rule>" (undefined: no rules ran). */
  firewall: string | undefined
  anonymous: boolean
  /** "websocket" for an upgrade (the line is written when its tunnel closes). */
  upgrade: string | undefined
  /** The client's request fields: Referer, User-Agent and captured headers come from here. */
  requestHeaders: IncomingHttpHeaders | undefined
  /** The fields sent to the client: captured response headers come from here. */
  responseHeaders: OutgoingHttpHeaders | IncomingHttpHeaders | undefined
  /** Which headers to copy into the line (undefined: none). */
  capture: HeaderCapture | undefined
}

export function emptyRecord(): AccessRecord {
  return {
    time: 0,
    client: '',
    user: undefined,
    method: '',
    target: '',
    protocol: '',
    status: 0,
    bytesIn: 0,
    bytesOut: 0,
    durationMs: 0,
    upstreamMs: undefined,
    route: undefined,
    pool: undefined,
    member: undefined,
    variant: undefined,
    cache: undefined,
    requestId: undefined,
    firewall: undefined,
    anonymous: false,
    upgrade: undefined,
    requestHeaders: undefined,
    responseHeaders: undefined,
    capture: undefined
  }
}
