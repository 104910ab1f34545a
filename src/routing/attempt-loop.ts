/**
 * The attempt loop: the one place an exchange with a pool happens, for plain forwarding, cache
 * misses, revalidations and background refreshes alike (as undici's RetryHandler and Caddy's
 * reverseproxy loop: one loop, many callers). It owns, in this order:
 *
 *   admission (max_requests + queue) -> per try: member choice among the eligible members not
 *   yet tried -> deadline and per-try timeout -> undici dispatch -> the try's outcome, recorded
 *   exactly once (member counters, outlier detection, switchyard_upstream_errors_total) ->
 *   retry (allowed methods, attempts left, deadline, retry budget) or hand the answer to the sink.
 *
 * Only the answer that will not be replaced reaches the sink: a retried 503 is never seen by the
 * client writer or the cache.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { EDGE_ERRORS, NO_MEMBER, RETRYABLE_KINDS, UPSTREAM_ERRORS, classifyUpstreamError, type ClassifiedError, type ProxyError } from '../errors.js'
import type { ProxyMetrics } from '../metrics/proxy-metrics.js'
import { realClock, type Clock } from '../clock.js'
import type { Member } from '../upstreams/member.js'
import type { Pool } from '../upstreams/pool.js'
import type { RoutedRequest } from './request-edge.js'

/** What the loop needs from the outside world. */
/**
 * The members a retry may go to: one is left (see Pool.eligible) and the pool's retry budget
 * agrees, taking a retry from it. Undefined: no retry. Shared with the WebSocket handshake.
 */
export function retryMembers(pool: Pool, tried: ReadonlySet<Member> | undefined, reuseTried: boolean, metrics: Pick<ProxyMetrics, 'retryBudgetExhausted'>): readonly Member[] | undefined {
  const eligible = pool.eligible(tried, reuseTried)
  if (eligible.length === 0) return undefined
  if (!pool.budget.tryAcquire()) {
    metrics.retryBudgetExhausted.labels(pool.name).inc()
    return undefined
  }
  return eligible
}

export interface AttemptDeps {
  dispatch(origin: string, opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean
  metrics: Pick<ProxyMetrics, 'upstreamErrors' | 'retries' | 'retryBudgetExhausted' | 'unrouted' | 'hot'>
  clock?: Clock
}

/** One exchange to run against the routed request's pool. */
export interface UpstreamRequest {
  readonly routed: RoutedRequest
  /** The method sent (a cache fill sends GET for a HEAD). */
  readonly method: string
  /** The request fields for a try on `member` (Host may depend on the member). */
  headers(member: Member): Record<string, string | string[]>
  /** A Buffer can be replayed by a retry; a stream cannot. */
  readonly body: Buffer | Readable | null
  /** The method and body allow another try after a failure. */
  readonly retryable: boolean
}

export interface UpstreamResponse {
  readonly status: number
  readonly statusMessage: string | undefined
  readonly headers: IncomingHttpHeaders
  readonly member: Member
  /** Milliseconds from this try's dispatch to the member's response head (the access log's upstream_ms). */
  readonly upstreamMs: number
}

/** Flow control the sink may use once the answer started. */
export interface Flow {
  /** Resumes reading the member after onResponseData returned false. */
  resume(): void
  /** Stops the exchange (the client went away, or the sink has what it needs). */
  abort(): void
}

/** Receives the exchange's final answer: exactly one of onResponseStart (then data, then end or error) or onResponseError. */
export interface ResponseSink {
  onResponseStart(res: UpstreamResponse, flow: Flow): void
  /** False: pause the member until flow.resume(). */
  onResponseData(chunk: Buffer): boolean
  onResponseEnd(): void
  /**
   * The exchange failed. `started` false: no answer was given yet (the sink answers `error`);
   * true: the body was cut midway. Client faults (body too large or too slow) come as edge errors.
   */
  onResponseError(error: ProxyError, started: boolean): void
  /** A 103 Early Hints from the member, before its final answer (RFC 8297). */
  onEarlyHints?(headers: IncomingHttpHeaders): void
  /** A 102 Processing from the member (RFC 2518): the final answer is still coming. */
  onProcessing?(): void
  /** The exchange was stopped through Flow.abort() (by the client writer or the sink itself). */
  onAbort?(): void
}

/** The client's own request body failed (too large, too slow): not the member's fault. */
export class ClientBodyError extends Error {
  constructor(readonly proxyError: ProxyError, message: string) {
    super(message)
  }
}

type Outcome = { failed: false } | { failed: true; kind: string } | { cancelled: true }
const OK: Outcome = { failed: false }
const CANCELLED: Outcome = { cancelled: true }
const HTTP_5XX: Outcome = { failed: true, kind: 'http_5xx' }

/** One try: an undici dispatch handler bound to one member. */
class Attempt implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | undefined
  settled = false
  /** Headers were handed to the sink. */
  started = false
  status = 0
  readonly sentAt: number

  constructor(private readonly loop: AttemptLoop, readonly member: Member) {
    this.sentAt = performance.now()
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.settled) controller.abort(new Error('try cancelled before it started'))
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    this.loop.onHeaders(this, controller, statusCode, headers, statusMessage)
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.loop.onData(this, controller, chunk)
  }

  onResponseEnd(): void {
    this.loop.onEnd(this)
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.loop.onError(this, err)
  }
}

/**
 * Runs one exchange to completion. Create with runExchange(); the sink hears exactly one final
 * answer or error.
 */
export class AttemptLoop implements Flow {
  private tried: Set<Member> | undefined
  private tries = 0
  private current: Attempt | undefined
  private admitted = false
  private finished = false
  private readonly pool: Pool
  private readonly clock: Clock
  /** clock.now() deadline over every try (0 = none). */
  private readonly deadline: number
  private deadlineTimer: unknown

  constructor(private readonly deps: AttemptDeps, private readonly req: UpstreamRequest, private readonly sink: ResponseSink) {
    this.pool = req.routed.pool
    this.clock = deps.clock ?? realClock
    const route = req.routed.route
    this.deadline = route.timeoutMs > 0 ? this.clock.now() + route.timeoutMs - (performance.now() - req.routed.start) : 0
  }

  /** Admission, then the first try. */
  start(): void {
    if (this.deadline > 0) this.deadlineTimer = this.clock.setTimeout(() => this.onDeadline(), Math.max(0, this.deadline - this.clock.now()))
    const verdict = this.pool.admit()
    if (verdict === true) this.admittedThenTry()
    else if (verdict === false) this.refuse()
    else {
      void verdict.then((ok) => {
        if (!ok) { this.refuse(); return }
        if (this.finished) { this.pool.release(); return } // the client left while queued
        this.admittedThenTry()
      })
    }
  }

  resume(): void {
    this.current?.controller?.resume()
  }

  abort(): void {
    if (this.finished) return
    const a = this.current
    this.finish()
    if (a !== undefined) {
      // Once the member's answer head arrived its outcome is known (a 5xx counts even if nobody reads it).
      this.settle(a, a.status >= 500 ? HTTP_5XX : a.status >= 200 ? OK : CANCELLED)
      a.controller?.abort(new Error('exchange aborted'))
    }
    this.sink.onAbort?.()
  }

  /**
   * The route's timeout_ms is a deadline for the whole exchange, as Envoy's route timeout: the
   * wait for admission or a connection, every try, and the response body. When it passes, the
   * try in progress is stopped (a timeout of its member) and the client gets 504, or a cut
   * response when the answer had started.
   */
  private onDeadline(): void {
    if (this.finished) return
    const a = this.current
    if (a !== undefined && !a.settled) {
      this.settle(a, { failed: true, kind: UPSTREAM_ERRORS.deadline.kind })
      a.controller?.abort(new Error('route deadline passed'))
    }
    const started = a?.started === true
    this.finish()
    if (a === undefined) this.deps.metrics.upstreamErrors.labels(this.pool.name, '', UPSTREAM_ERRORS.deadline.kind).inc()
    this.sink.onResponseError(UPSTREAM_ERRORS.deadline, started)
  }

  private refuse(): void {
    if (this.finished) return
    this.deps.metrics.unrouted.labels('pool_saturated').inc()
    this.finish()
    this.sink.onResponseError(EDGE_ERRORS.pool_saturated, false)
  }

  private admittedThenTry(): void {
    this.admitted = true
    this.tryOnce(this.pool.eligible(undefined))
  }

  private finish(): void {
    if (this.finished) return
    this.finished = true
    if (this.deadlineTimer !== undefined) this.clock.clearTimeout(this.deadlineTimer)
    if (this.admitted) {
      this.admitted = false
      this.pool.release()
    }
  }

  /** One try on a member of `eligible`. */
  private tryOnce(eligible: readonly Member[]): void {
    if (this.finished) return
    const routed = this.req.routed
    const member = this.pool.pick(eligible, this.pool.hashKey(routed.headers, routed.clientIp))
    if (member === undefined) return this.fail(NO_MEMBER, undefined)
    // 0 means no per-try timeout (undici reads 0 as "none" too); the route deadline still applies.
    let timeout = routed.route.retries.per_try_timeout_ms ?? this.pool.requestTimeoutMs
    if (this.deadline > 0) {
      const left = Math.floor(this.deadline - this.clock.now())
      if (left <= 0) return this.fail(UPSTREAM_ERRORS.deadline, undefined)
      timeout = timeout > 0 ? Math.min(timeout, left) : left
    }
    if (this.tries++ === 0) this.pool.budget.recordRequest()
    member.inFlight++
    member.requests++
    const attempt = new Attempt(this, member)
    this.current = attempt
    this.deps.dispatch(member.origin, {
      path: routed.path + routed.query,
      method: this.req.method as Dispatcher.HttpMethod,
      headers: this.req.headers(member),
      body: this.req.body,
      headersTimeout: timeout,
      bodyTimeout: timeout
    }, attempt)
  }

  /** The one place a try's outcome is recorded. */
  private settle(a: Attempt, outcome: Outcome): void {
    if (a.settled) return
    a.settled = true
    const m = a.member
    m.inFlight--
    if ('cancelled' in outcome) return
    this.pool.recordOutcome(m, outcome.failed)
    if (outcome.failed) {
      m.failures++
      this.deps.metrics.upstreamErrors.labels(this.pool.name, m.name, outcome.kind).inc()
    }
  }

  /** The exchange failed before an answer (counted under `member` '' when no try was made). */
  private fail(error: ClassifiedError, a: Attempt | undefined): void {
    if (a === undefined) this.deps.metrics.upstreamErrors.labels(this.pool.name, '', error.kind).inc()
    this.finish()
    this.sink.onResponseError(error, false)
  }

  /**
   * The members another try may go to, if the request allows one: attempts and the deadline
   * have room, a member is left and the pool's retry budget agrees (taking a retry from it).
   * `reuseTried`: a connection failure may go back to a member already tried when no other is
   * left (a stale keep-alive socket); a status never does. Undefined: no retry.
   */
  private retryTargets(reuseTried: boolean): readonly Member[] | undefined {
    const route = this.req.routed.route
    if (this.finished || !this.req.retryable || this.tries > route.retries.attempts) return undefined
    if (this.deadline > 0 && this.clock.now() >= this.deadline) return undefined
    return retryMembers(this.pool, this.tried, reuseTried, this.deps.metrics)
  }

  private retry(eligible: readonly Member[], reason: string): void {
    this.deps.metrics.retries.labels(this.req.routed.route.name, this.pool.name, reason).inc()
    this.tryOnce(eligible)
  }

  private remember(a: Attempt): void {
    (this.tried ??= new Set()).add(a.member)
  }

  onHeaders(a: Attempt, controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders, statusMessage: string | undefined): void {
    if (a.settled) return
    if (status < 200) {
      // A proxy forwards 1xx answers it did not ask for (RFC 9110 section 15.2): 102 Processing
      // and 103 Early Hints (never stored). 100 Continue concerns this hop: the proxy sends the
      // body without waiting for it, and answers the client's Expect itself.
      if (status === 103) this.sink.onEarlyHints?.(headers)
      else if (status === 102) this.sink.onProcessing?.()
      return
    }
    if (status > 599) {
      // Node would relay 600-999; RFC 9110 section 15 defines none of them.
      // Settle first: undici's abort calls onResponseError synchronously, which must find the try settled.
      this.settle(a, { failed: true, kind: UPSTREAM_ERRORS.protocol.kind })
      controller.abort(new Error(`invalid status ${status} from upstream`))
      return this.fail(UPSTREAM_ERRORS.protocol, a)
    }
    a.status = status
    const upstreamMs = performance.now() - a.sentAt
    this.deps.metrics.hot.upstreamDuration.get(this.pool.name, a.member.name).observe(upstreamMs / 1000)
    if (status >= 500 && this.req.routed.route.retryOn.has(status)) {
      this.remember(a)
      const next = this.retryTargets(false)
      if (next !== undefined) {
        this.settle(a, HTTP_5XX)
        controller.abort(new Error('answer replaced by a retry'))
        return this.retry(next, `status_${status}`)
      }
    }
    a.started = true
    this.sink.onResponseStart({ status, statusMessage, headers, member: a.member, upstreamMs }, this)
  }

  onData(a: Attempt, controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (a.settled || !a.started || this.finished) return
    if (!this.sink.onResponseData(chunk) && !controller.paused) controller.pause()
  }

  onEnd(a: Attempt): void {
    if (a.settled || this.finished) return
    this.settle(a, a.status >= 500 ? HTTP_5XX : OK)
    this.finish()
    this.sink.onResponseEnd()
  }

  onError(a: Attempt, err: Error): void {
    if (a.settled || this.finished) return
    const clientFault = clientBodyError(err)
    if (clientFault !== undefined) {
      this.settle(a, CANCELLED)
      this.finish()
      this.sink.onResponseError(clientFault, a.started)
      return
    }
    const c = classifyUpstreamError(err)
    this.settle(a, { failed: true, kind: c.kind })
    if (!a.started) {
      this.remember(a)
      const next = RETRYABLE_KINDS.has(c.kind) ? this.retryTargets(true) : undefined
      if (next !== undefined) return this.retry(next, c.kind)
    }
    this.finish()
    this.sink.onResponseError(c, a.started)
  }
}

function clientBodyError(err: unknown): ProxyError | undefined {
  let cur: unknown = err
  for (let depth = 0; depth < 4 && cur != null && typeof cur === 'object'; depth++) {
    if (cur instanceof ClientBodyError) return cur.proxyError
    cur = (cur as { cause?: unknown }).cause
  }
  return undefined
}

/** Starts an exchange; the returned Flow aborts it (the client went away). */
export function runExchange(deps: AttemptDeps, req: UpstreamRequest, sink: ResponseSink): Flow {
  const loop = new AttemptLoop(deps, req, sink)
  loop.start()
  return loop
}
