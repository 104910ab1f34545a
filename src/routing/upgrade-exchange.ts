/**
 * The upgrade handshake with a pool: the same steps as the attempt loop (attempt-loop.ts) for
 * a request that is not sent through undici (an upgraded connection leaves any connection pool,
 * and is always HTTP/1.1, also to a pool that speaks HTTP/2):
 *
 *   admission (max_requests + queue, held for the handshake only) -> per try: the pool's member
 *   choice (balancer, hash_on, health, ejection) among the members not yet tried -> a new
 *   connection with the pool's connect timeout, then the answer within the try timeout -> the
 *   try's outcome, recorded once (member counters, outlier detection, upstream errors) -> a retry
 *   on another member for a failure before any answer (refused, reset, connect timeout, dns) or a
 *   retry_on status, or the result.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest, type RequestOptions } from 'node:https'
import { isIP, type Socket } from 'node:net'
import { EDGE_ERRORS, NO_MEMBER, RETRYABLE_KINDS, UPSTREAM_ERRORS, classifyUpstreamError, type ClassifiedError, type ProxyError } from '../errors.js'
import type { ProxyMetrics } from '../metrics/proxy-metrics.js'
import type { Member } from '../upstreams/member.js'
import type { Pool } from '../upstreams/pool.js'
import type { RoutedRequest } from './request-edge.js'
import { retryMembers } from './attempt-loop.js'

/** How the handshake ended; exactly one is reported unless it was cancelled. */
export type HandshakeResult =
  /** The member switched: its 101 and its socket, with the bytes it sent after the 101. The member stays counted in flight. */
  | { readonly kind: 'upgraded'; readonly member: Member; readonly response: IncomingMessage; readonly socket: Socket; readonly head: Buffer }
  /** The member answered with another status (its body still to be read). */
  | { readonly kind: 'answered'; readonly member: Member; readonly response: IncomingMessage }
  /** No answer from any member: the proxy's own 502/503/504. */
  | { readonly kind: 'failed'; readonly error: ProxyError }

export interface HandshakeDeps {
  metrics: Pick<ProxyMetrics, 'upstreamErrors' | 'retries' | 'retryBudgetExhausted' | 'unrouted' | 'hot'>
}

interface Try {
  readonly member: Member
  readonly sentAt: number
  settled: boolean
  abort: () => void
}

const OK = { failed: false } as const
type Outcome = { failed: false } | { failed: true; kind: string } | { cancelled: true }

/** One handshake; start() runs it, cancel() stops it (the client went away). */
export class Handshake {
  private tried: Set<Member> | undefined
  private tries = 0
  private current: Try | undefined
  private admitted = false
  private finished = false
  private readonly pool: Pool
  /** performance.now() deadline of the route's timeout_ms (0 = none). */
  private readonly deadline: number
  private deadlineTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly deps: HandshakeDeps,
    private readonly routed: RoutedRequest,
    /** The fields sent to `member` (Host may depend on it). */
    private readonly headers: (member: Member) => Record<string, string | string[]>,
    private readonly onResult: (r: HandshakeResult) => void
  ) {
    this.pool = routed.pool
    this.deadline = routed.route.timeoutMs > 0 ? routed.start + routed.route.timeoutMs : 0
  }

  start(): void {
    if (this.deadline > 0) this.deadlineTimer = setTimeout(() => this.onDeadline(), Math.max(0, this.deadline - performance.now()))
    const verdict = this.pool.admit()
    if (verdict === true) this.admittedThenTry()
    else if (verdict === false) this.refuse()
    else {
      void verdict.then((ok) => {
        if (!ok) { this.refuse(); return }
        if (this.finished) { this.pool.release(); return }
        this.admittedThenTry()
      })
    }
  }

  cancel(): void {
    if (this.finished) return
    const t = this.current
    this.finish()
    if (t !== undefined) {
      this.settle(t, { cancelled: true })
      t.abort()
    }
  }

  private admittedThenTry(): void {
    this.admitted = true
    this.tryOnce(this.pool.eligible(undefined))
  }

  private refuse(): void {
    if (this.finished) return
    this.deps.metrics.unrouted.labels('pool_saturated').inc()
    this.finish()
    this.onResult({ kind: 'failed', error: EDGE_ERRORS.pool_saturated })
  }

  private onDeadline(): void {
    if (this.finished) return
    const t = this.current
    if (t !== undefined && !t.settled) {
      this.settle(t, { failed: true, kind: UPSTREAM_ERRORS.deadline.kind })
      t.abort()
    } else {
      this.deps.metrics.upstreamErrors.labels(this.pool.name, '', UPSTREAM_ERRORS.deadline.kind).inc()
    }
    this.finish()
    this.onResult({ kind: 'failed', error: UPSTREAM_ERRORS.deadline })
  }

  private finish(): void {
    if (this.finished) return
    this.finished = true
    clearTimeout(this.deadlineTimer)
    if (this.admitted) {
      this.admitted = false
      this.pool.release()
    }
  }

  private fail(error: ClassifiedError, counted: boolean): void {
    if (!counted) this.deps.metrics.upstreamErrors.labels(this.pool.name, '', error.kind).inc()
    this.finish()
    this.onResult({ kind: 'failed', error })
  }

  private tryOnce(eligible: readonly Member[]): void {
    if (this.finished) return
    const routed = this.routed
    const member = this.pool.pick(eligible, this.pool.hashKey(routed.headers, routed.clientIp))
    if (member === undefined) return this.fail(NO_MEMBER, false)
    let responseMs = routed.route.retries.per_try_timeout_ms ?? this.pool.requestTimeoutMs
    if (this.deadline > 0) {
      const left = Math.floor(this.deadline - performance.now())
      if (left <= 0) return this.fail(UPSTREAM_ERRORS.deadline, false)
      responseMs = responseMs > 0 ? Math.min(responseMs, left) : left
    }
    if (this.tries++ === 0) this.pool.budget.recordRequest()
    member.inFlight++
    member.requests++
    const t: Try = { member, sentAt: performance.now(), settled: false, abort: () => {} }
    this.current = t
    t.abort = requestUpgrade(member, routed.path + routed.query, this.headers(member), {
      connectMs: this.pool.config.timeouts.connect_ms,
      responseMs,
      verifyTls: this.pool.config.tls.verify
    }, {
      onUpgrade: (response, socket, head) => this.onUpgrade(t, response, socket, head),
      onResponse: (response) => this.onResponse(t, response),
      onError: (error) => this.onError(t, error)
    })
  }

  /** The one place a try's outcome is recorded (as AttemptLoop.settle). */
  private settle(t: Try, outcome: Outcome, keepInFlight = false): void {
    if (t.settled) return
    t.settled = true
    const m = t.member
    if (!keepInFlight) m.inFlight--
    if ('cancelled' in outcome) return
    this.pool.recordOutcome(m, outcome.failed)
    if (outcome.failed) {
      m.failures++
      this.deps.metrics.upstreamErrors.labels(this.pool.name, m.name, outcome.kind).inc()
    }
  }

  private observe(t: Try): void {
    this.deps.metrics.hot.upstreamDuration.get(this.pool.name, t.member.name).observe((performance.now() - t.sentAt) / 1000)
  }

  private onUpgrade(t: Try, response: IncomingMessage, socket: Socket, head: Buffer): void {
    if (t.settled || this.finished) {
      socket.destroy()
      return
    }
    this.observe(t)
    // RFC 6455 section 4.1: a 101 that switches to anything but websocket fails the handshake.
    if (!hasToken(response.headers.upgrade, 'websocket')) {
      socket.destroy()
      this.settle(t, { failed: true, kind: UPSTREAM_ERRORS.protocol.kind })
      return this.fail(UPSTREAM_ERRORS.protocol, true)
    }
    // The tunnel holds the member (in flight, for least_request) until it closes.
    this.settle(t, OK, true)
    this.finish()
    this.onResult({ kind: 'upgraded', member: t.member, response, socket, head })
  }

  private onResponse(t: Try, response: IncomingMessage): void {
    if (t.settled || this.finished) {
      response.destroy()
      return
    }
    this.observe(t)
    const status = response.statusCode ?? 0
    if (status < 200) {
      // A 101 Node did not read as an upgrade (no Connection: upgrade), or a stray 1xx.
      response.destroy()
      this.settle(t, { failed: true, kind: UPSTREAM_ERRORS.protocol.kind })
      return this.fail(UPSTREAM_ERRORS.protocol, true)
    }
    if (status >= 500 && this.routed.route.retryOn.has(status)) {
      this.remember(t)
      const next = this.retryTargets(false)
      if (next !== undefined) {
        this.settle(t, { failed: true, kind: 'http_5xx' })
        response.destroy()
        return this.retry(next, `status_${status}`)
      }
    }
    this.settle(t, status >= 500 ? { failed: true, kind: 'http_5xx' } : OK)
    this.finish()
    this.onResult({ kind: 'answered', member: t.member, response })
  }

  private onError(t: Try, error: ClassifiedError): void {
    if (t.settled || this.finished) return
    this.settle(t, { failed: true, kind: error.kind })
    this.remember(t)
    // Another member only: each try is a new connection, so there is no stale keep-alive socket
    // that would make the same member worth another try (as the attempt loop allows).
    const next = RETRYABLE_KINDS.has(error.kind) ? this.retryTargets(false) : undefined
    if (next !== undefined) return this.retry(next, error.kind)
    this.fail(error, true)
  }

  private remember(t: Try): void {
    (this.tried ??= new Set()).add(t.member)
  }

  /** As AttemptLoop.retryTargets: attempts and deadline left, a member left, the retry budget agrees. */
  private retryTargets(reuseTried: boolean): readonly Member[] | undefined {
    const route = this.routed.route
    if (this.finished || this.tries > route.retries.attempts || !route.retryMethods.has(this.routed.method)) return undefined
    if (this.deadline > 0 && performance.now() >= this.deadline) return undefined
    return retryMembers(this.pool, this.tried, reuseTried, this.deps.metrics)
  }

  private retry(eligible: readonly Member[], reason: string): void {
    this.deps.metrics.retries.labels(this.routed.route.name, this.pool.name, reason).inc()
    this.tryOnce(eligible)
  }
}

interface UpgradeHandlers {
  onUpgrade(response: IncomingMessage, socket: Socket, head: Buffer): void
  onResponse(response: IncomingMessage): void
  onError(error: ClassifiedError): void
}

/**
 * Sends one upgrade request to a member on a new connection (never a pooled one: it will not
 * come back). `connectMs` bounds the connection (TCP and TLS), `responseMs` the wait for the
 * answer's head after it; 0 turns either off. Returns an abort function. Exactly one handler
 * is called unless aborted first.
 */
export function requestUpgrade(
  member: Member,
  path: string,
  headers: Record<string, string | string[]>,
  opts: { connectMs: number; responseMs: number; verifyTls: boolean },
  h: UpgradeHandlers
): () => void {
  const tls = member.origin.startsWith('https:')
  let done = false
  let timer: NodeJS.Timeout | undefined
  const settle = (): boolean => {
    if (done) return false
    done = true
    clearTimeout(timer)
    return true
  }
  const options: RequestOptions = { host: member.hostname, port: member.port, method: 'GET', path, headers, agent: false }
  if (tls) {
    options.rejectUnauthorized = opts.verifyTls
    if (isIP(member.hostname) === 0) options.servername = member.hostname
  }
  let req: ClientRequest
  try {
    req = tls ? httpsRequest(options) : httpRequest(options)
  } catch {
    // A field Node will not send (checked on the client's way in; kept as a guard).
    queueMicrotask(() => { if (settle()) h.onError(UPSTREAM_ERRORS.other) })
    return () => { settle() }
  }
  const fail = (error: ClassifiedError): void => {
    if (!settle()) return
    req.destroy()
    h.onError(error)
  }
  if (opts.connectMs > 0) timer = setTimeout(() => fail(UPSTREAM_ERRORS.connect_timeout), opts.connectMs)
  req.once('socket', (s: Socket) => {
    const connected = (): void => {
      if (done) return
      clearTimeout(timer)
      timer = opts.responseMs > 0 ? setTimeout(() => fail(UPSTREAM_ERRORS.timeout), opts.responseMs) : undefined
    }
    if (s.connecting) s.once(tls ? 'secureConnect' : 'connect', connected)
    else connected()
  })
  req.on('error', (err) => fail(classifyUpstreamError(err)))
  req.on('upgrade', (response: IncomingMessage, socket: Socket, head: Buffer) => {
    if (!settle()) { socket.destroy(); return }
    h.onUpgrade(response, socket, head)
  })
  req.on('response', (response: IncomingMessage) => {
    if (!settle()) { response.destroy(); return }
    h.onResponse(response)
  })
  req.end()
  return () => { if (settle()) req.destroy() }
}

/** Whether a comma-separated field lists `token` (case-insensitive; a protocol's /version is ignored). */
export function hasToken(value: string | string[] | undefined, token: string): boolean {
  if (value === undefined) return false
  for (const part of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    const t = part.trim()
    const slash = t.indexOf('/')
    if ((slash < 0 ? t : t.slice(0, slash)).toLowerCase() === token) return true
  }
  return false
}
