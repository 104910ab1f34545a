import type { IncomingHttpHeaders } from 'node:http'
import type { Balancer } from '../balancing/balancer.js'
import { readCookie } from '../balancing/cookie.js'
import { createBalancer } from '../balancing/registry.js'
import type { PoolConfig } from '../config/schema.js'
import { Member } from './member.js'
import { RetryBudget } from './retry-budget.js'
import { Admission, type AdmissionLimits } from './admission.js'
import { realClock, type Clock } from '../clock.js'

export type HealthEvent =
  | { kind: 'check'; member: Member; up: boolean; detail: string }
  | { kind: 'ejected'; member: Member; forMs: number; failures: number }
  | { kind: 'returned'; member: Member }
  | { kind: 'panic'; on: boolean; healthy: number; total: number }

/** A named group of upstreams: its balancer, health state and forwarding settings. */
export class Pool {
  readonly name: string
  readonly members: readonly Member[]
  readonly balancerName: string
  readonly preserveHost: boolean
  readonly requestTimeoutMs: number
  readonly budget: RetryBudget
  readonly config: PoolConfig
  /** http, or tcp/udp for a pool of tcp:// or udp:// members (the members of one pool share it). */
  readonly protocol: 'http' | 'tcp' | 'udp'
  /** Called on every health transition, once per transition (logging, metrics). */
  onHealthEvent: (e: HealthEvent) => void = () => {}
  private readonly balancer: Balancer
  private readonly hashHeader: string | undefined
  private readonly hashCookie: string | undefined
  private panic = false
  /** max_requests and its queue; shared with the pool of the same name across reloads. */
  readonly admission: Admission
  private readonly limits: AdmissionLimits
  /** The members balancers may pick now: healthy ones, or all of them in panic (recompute()). */
  private eligibleNow: readonly Member[]
  private readonly timers = new Set<unknown>()

  /** With `previous` (a reload of the same pool), admitted requests and waiters carry over. */
  constructor(name: string, cfg: PoolConfig, previous?: Pool, private readonly clock: Clock = realClock) {
    this.name = name
    this.config = cfg
    this.members = cfg.members.map((m, i) => new Member(i, m))
    this.protocol = this.members[0]?.protocol ?? 'http'
    this.balancerName = cfg.balancer
    this.balancer = createBalancer(cfg.balancer)
    this.preserveHost = cfg.host_header === 'preserve'
    this.requestTimeoutMs = cfg.timeouts.request_ms
    this.hashHeader = cfg.hash_on?.header?.toLowerCase()
    this.hashCookie = cfg.hash_on?.cookie
    this.budget = new RetryBudget(cfg.retry_budget.percent, cfg.retry_budget.min_per_second, cfg.retry_budget.window_ms, () => clock.now())
    this.limits = { maxRequests: cfg.max_requests, queueSize: cfg.queue.size, queueTimeoutMs: cfg.queue.timeout_ms }
    this.admission = previous?.admission ?? new Admission(clock)
    this.eligibleNow = this.members
  }

  /**
   * Takes a max_requests slot: true at once when there is room, a promise of true when one frees
   * up, false when the queue is full or the wait timed out (503 with Retry-After).
   */
  admit(): boolean | Promise<boolean> {
    return this.admission.admit(this.limits)
  }

  /** Frees the slot admit() took. */
  release(): void {
    this.admission.release(this.limits)
  }

  /** The hash key of a request for the `hash` balancer: a header, a cookie, else the client address. */
  hashKey(headers: IncomingHttpHeaders, clientIp: string): string | undefined {
    if (this.balancerName !== 'hash') return undefined
    let key: string | undefined
    if (this.hashHeader !== undefined) {
      const v = headers[this.hashHeader]
      key = Array.isArray(v) ? v.join(',') : v
    } else if (this.hashCookie !== undefined) {
      key = readCookie(headers.cookie, this.hashCookie)
    }
    return key === undefined || key === '' ? clientIp : key
  }

  /**
   * The members a try may go to: the eligible ones (healthy, or all in panic) not in `tried`.
   * When every eligible member was tried, `reuseTried` allows them again (a connection failure
   * on a one-member pool is usually a stale keep-alive socket, worth one more try).
   */
  eligible(tried: ReadonlySet<Member> | undefined, reuseTried = false): readonly Member[] {
    const now = this.eligibleNow
    if (tried === undefined || tried.size === 0) return now
    const left = now.filter((m) => !tried.has(m))
    return left.length > 0 || !reuseTried ? left : now
  }

  /** Picks a member among `eligible` (see eligible()); undefined when it is empty. */
  pick(eligible: readonly Member[], key: string | undefined): Member | undefined {
    if (eligible.length === 0) return undefined
    return this.balancer.pick(eligible, key, this.members) as Member | undefined
  }

  /** Active health check verdict for a member, applying rise/fall. */
  recordCheck(m: Member, passed: boolean, detail: string, rise: number, fall: number): void {
    m.lastCheck = detail
    if (passed) {
      m.checkFails = 0
      m.checkPasses++
      if (!m.checkUp && m.checkPasses >= rise) {
        m.checkUp = true
        this.onHealthEvent({ kind: 'check', member: m, up: true, detail })
        this.recompute()
      }
    } else {
      m.checkPasses = 0
      m.checkFails++
      if (m.checkUp && m.checkFails >= fall) {
        m.checkUp = false
        this.onHealthEvent({ kind: 'check', member: m, up: false, detail })
        this.recompute()
      }
    }
  }

  /** Passive health: the outcome of a real exchange (failure = connect error, reset or 5xx). */
  recordOutcome(m: Member, failed: boolean): void {
    if (!failed) {
      m.consecutiveFailures = 0
      return
    }
    m.consecutiveFailures++
    const o = this.config.outlier
    if (o.consecutive_failures === 0 || m.consecutiveFailures < o.consecutive_failures) return
    const now = this.clock.now()
    if (m.ejectedUntil > now) return
    const ejected = this.members.filter((x) => x.ejectedUntil > now).length
    if (((ejected + 1) * 100) / this.members.length > o.max_ejected_percent) return
    m.ejections++
    // Each ejection of the same member lasts longer (Envoy: base_ejection_time x ejections).
    const forMs = Math.min(o.max_ejection_ms, o.base_ejection_ms * m.ejections)
    m.ejectedUntil = now + forMs
    m.consecutiveFailures = 0
    this.onHealthEvent({ kind: 'ejected', member: m, forMs, failures: o.consecutive_failures })
    this.recompute()
    this.scheduleReturn(m, forMs)
  }

  /** After a reload: members adopted mid-ejection come back when their ejection ends. */
  resumeEjections(now = this.clock.now()): void {
    for (const m of this.members) if (m.ejectedUntil > now) this.scheduleReturn(m, m.ejectedUntil - now)
  }

  private scheduleReturn(m: Member, forMs: number): void {
    const t = this.clock.setTimeout(() => {
      this.timers.delete(t)
      this.onHealthEvent({ kind: 'returned', member: m })
      this.recompute()
    }, forMs + 1)
    this.timers.add(t)
  }

  /**
   * Sets each member's `available` flag: healthy members only, unless fewer than the panic
   * threshold are healthy, then all of them (a partly working pool beats none). A drained member
   * is never available, and the panic threshold counts only the members not drained (draining
   * one of two healthy members is not a reason to send traffic to a failing third).
   */
  recompute(now = this.clock.now()): void {
    let healthy = 0
    let serving = 0
    for (const m of this.members) {
      if (m.drained) continue
      serving++
      if (m.healthy(now)) healthy++
    }
    const panic = serving > 0 && healthy * 100 < this.config.panic_threshold_percent * serving
    for (const m of this.members) m.available = !m.drained && (panic || m.healthy(now))
    this.eligibleNow = this.members.every((m) => m.available) ? this.members : this.members.filter((m) => m.available)
    if (panic !== this.panic) {
      this.panic = panic
      this.onHealthEvent({ kind: 'panic', on: panic, healthy, total: serving })
    }
  }

  /** Whether the pool is in panic mode (too few healthy members: all of them are used). */
  get panicking(): boolean {
    return this.panic
  }

  /** The member named `name` (its `name`, by default host:port). */
  member(name: string): Member | undefined {
    return this.members.find((m) => m.name === name)
  }

  /**
   * Drains a member (no balancer picks it for new requests; its requests in flight finish) or
   * puts it back. Returns whether the state changed.
   */
  setDrained(m: Member, drained: boolean): boolean {
    if (m.drained === drained) return false
    m.drained = drained
    this.recompute()
    return true
  }

  /** Stops ejection timers (the pool is being replaced or the app is closing); admission lives on in its successor. */
  dispose(): void {
    for (const t of this.timers) this.clock.clearTimeout(t)
    this.timers.clear()
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, balancer: this.balancerName, panic: this.panic, in_flight: this.admission.inFlight, queued: this.admission.queued, members: this.members.map((m) => m.toJSON()) }
  }
}
