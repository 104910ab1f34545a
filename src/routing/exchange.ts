import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { classifyUpstreamError, upstreamErrorBody, type ClassifiedError } from '../errors.js'
import type { ProxyMetrics } from '../metrics/proxy-metrics.js'
import type { Member } from '../upstreams/member.js'
import type { Pool } from '../upstreams/pool.js'
import type { UpstreamDispatcher } from '../upstreams/dispatcher.js'
import type { HttpCache } from '../cache/http-cache.js'
import { clientResponseHeaders, upstreamRequestHeaders } from './forwarding-headers.js'
import type { RouteRuntime, Runtime } from './runtime.js'

export interface ProxyDeps {
  /** The live runtime; read once per request so a reload swaps it atomically. */
  runtime: () => Runtime
  metrics: ProxyMetrics
  dispatcher: UpstreamDispatcher
  cache: HttpCache | undefined
  accessLog: boolean
}

export const VIA = 'switchyard'
const BODYLESS = new Set(['GET', 'HEAD'])

/** Per-request state: one object per request, read by static hooks (no per-request closures). */
export class Exchange {
  route: RouteRuntime | undefined = undefined
  pool: Pool | undefined = undefined
  member: Member | undefined = undefined
  variant: string | undefined = undefined
  setCookie: string | undefined = undefined
  clientIp = ''
  peerIp = ''
  trustedPeer = false
  /** Normalised host and path: what was routed, cache-keyed and sent upstream. */
  host = ''
  /** The authority as received (Host, or the absolute-form target's, RFC 9112 section 3.2.2). */
  authority = ''
  path = ''
  /** Raw query string including '?', or ''. */
  query = ''
  upstreamStart = 0
  /** Cache outcome for X-Cache / Cache-Status, when the route caches. */
  cacheStatus: string | undefined = undefined
  reply: FastifyReply | undefined = undefined
  /** Retries: whether this request may be retried, how many tries so far, members already tried. */
  retryable = false
  tries = 0
  tried: Set<Member> | undefined = undefined
  /** performance.now() deadline across all tries (0 = none). */
  deadline = 0
  /** Location / Content-Location of the answer, for cache invalidation after unsafe methods. */
  location: string | undefined = undefined
  contentLocation: string | undefined = undefined
  /** Stops the current upstream try (set while one is running). */
  abortUpstream: (() => void) | undefined = undefined
  /** Bounds how long a streamed request body may take (limits.request_timeout_ms). */
  bodyTimer: NodeJS.Timeout | undefined = undefined
  /** Holds a max_requests slot of its pool, released when the response ends. */
  admitted = false
  /** The request body, held in memory so a retry can replay it (small bodies only). */
  body: Buffer | undefined = undefined
  constructor(readonly start: number, readonly request: FastifyRequest, readonly deps: ProxyDeps, readonly rt: Runtime) {}

  /** Picks a member of the chosen pool and counts it in flight; undefined when none is available. */
  pickMember(): Member | undefined {
    const m = (this.pool as Pool).pick(this.request.headers, this.clientIp, this.tried)
    if (m !== undefined) {
      this.member = m
      m.inFlight++
      m.requests++
      this.upstreamStart = performance.now()
    }
    return m
  }

  /** Releases the member picked earlier (before picking another for a retry or at the end). */
  releaseMember(): void {
    if (this.member !== undefined) {
      this.member.inFlight--
      this.member = undefined
    }
  }

  upstreamHeaders(): Record<string, string | string[]> {
    const request = this.request
    const pool = this.pool as Pool
    const member = this.member as Member
    return upstreamRequestHeaders(request.headers, {
      clientIp: this.clientIp,
      trustedPeer: this.trustedPeer,
      peerIp: this.peerIp,
      proto: 'http',
      originalHost: this.authority,
      upstreamHost: pool.preserveHost ? this.authority : member.host,
      via: `${request.raw.httpVersion} ${VIA}`,
      requestId: request.id,
      variant: this.variant,
      bodyless: BODYLESS.has(request.method)
    })
  }

  clientHeaders(upstream: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
    return clientResponseHeaders(upstream, `1.1 ${VIA}`, this.request.id, this.variant, this.setCookie)
  }

  observeUpstream(): void {
    // The client may have left (and the member been released) before the upstream answered.
    if (this.member === undefined || this.pool === undefined) return
    this.deps.metrics.hot.upstreamDuration.get((this.pool as Pool).name, (this.member as Member).name).observe((performance.now() - this.upstreamStart) / 1000)
  }

  /** Passive health: feeds the pool's outlier detection with this exchange's outcome. */
  outcome(failed: boolean): void {
    if (this.member !== undefined) (this.pool as Pool).recordOutcome(this.member, failed)
  }

  recordUpstreamError(c: ClassifiedError): void {
    const member = this.member
    if (member !== undefined) {
      member.failures++
      if (c.kind !== 'no_member') (this.pool as Pool).recordOutcome(member, true)
    }
    this.deps.metrics.upstreamErrors.labels(this.pool?.name ?? '', member?.name ?? '', c.kind).inc()
  }

  /** Answers with the short plain error body for a failed upstream exchange. */
  failUpstream(reply: FastifyReply, err: unknown): FastifyReply {
    const c = classifyUpstreamError(err)
    this.recordUpstreamError(c)
    this.request.log.warn({ pool: this.pool?.name, member: this.member?.name, kind: c.kind, err }, 'upstream request failed')
    return plain(reply, c.status, upstreamErrorBody((this.pool as Pool).name, c))
  }
}

export function plain(reply: FastifyReply, status: number, body: string): FastifyReply {
  return reply.code(status).header('content-type', 'text/plain; charset=utf-8').send(body)
}

export type { IncomingHttpHeaders }
