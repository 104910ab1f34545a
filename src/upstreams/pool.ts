import type { IncomingHttpHeaders } from 'node:http'
import type { Balancer } from '../balancing/balancer.js'
import { readCookie } from '../balancing/cookie.js'
import { createBalancer } from '../balancing/registry.js'
import type { PoolConfig } from '../config/schema.js'
import { Member } from './member.js'
import { RetryBudget } from './retry-budget.js'

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
  /** Called on every health transition, once per transition (logging, metrics). */
  onHealthEvent: (e: HealthEvent) => void = () => {}
  private readonly balancer: Balancer
  private readonly hashHeader: string | undefined
  private readonly hashCookie: string | undefined
  private panic = false
  /** Admitted requests outstanding, and those waiting for a slot (max_requests). */
  private active = 0
  private readonly waiters: { admit: () => void; timer: NodeJS.Timeout }[] = []
  private readonly timers = new Set<NodeJS.Timeout>()

  constructor(name: string, cfg: PoolConfig) {
    this.name = name
    this.config = cfg
    this.members = cfg.members.map((m, i) => new Member(i, m))
    this.balancerName = cfg.balancer
    this.balancer = createBalancer(cfg.balancer)
    this.preserveHost = cfg.host_header === 'preserve'
    this.requestTimeoutMs = cfg.timeouts.request_ms
    this.hashHeader = cfg.hash_on?.header?.toLowerCase()
    this.hashCookie = cfg.hash_on?.cookie
    this.budget = new RetryBudget(cfg.retry_budget.percent, cfg.retry_budget.min_per_second, cfg.retry_budget.window_ms)
  }

  /** Picks a member for a request, or undefined when none is available. `exclude` skips tried members. */
  pick(headers: IncomingHttpHeaders, clientIp: string, exclude?: ReadonlySet<Member>): Member | undefined {
    let key: string | undefined
    if (this.balancerName === 'hash') {
      if (this.hashHeader !== undefined) {
        const v = headers[this.hashHeader]
        key = Array.isArray(v) ? v.join(',') : v
      } else if (this.hashCookie !== undefined) {
        key = readCookie(headers.cookie, this.hashCookie)
      }
      // A request without the header or cookie is hashed on its client address instead.
      if (key === undefined || key === '') key = clientIp
    }
    if (exclude === undefined || exclude.size === 0) return this.balancer.pick(this.members, key) as Member | undefined
    // A retry: hide the members already tried for this request, if any other is available.
    const saved = this.members.map((m) => m.available)
    let other = false
    for (const m of this.members) {
      if (exclude.has(m)) m.available = false
      else if (m.available) other = true
    }
    const picked = other ? this.balancer.pick(this.members, key) as Member | undefined : undefined
    this.members.forEach((m, i) => { m.available = saved[i] })
    return picked ?? (this.balancer.pick(this.members, key) as Member | undefined)
  }

  /**
   * Admission under max_requests: true at once when there is room, a promise that resolves
   * true when a slot frees up, or false when the queue is full or the wait timed out.
   */
  admit(): boolean | Promise<boolean> {
    const max = this.config.max_requests
    if (max === 0 || this.active < max) {
      this.active++
      return true
    }
    if (this.waiters.length >= this.config.queue.size) return false
    return new Promise<boolean>((resolve) => {
      const w = {
        admit: () => { clearTimeout(w.timer); this.active++; resolve(true) },
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(w)
          if (i >= 0) this.waiters.splice(i, 1)
          resolve(false)
        }, this.config.queue.timeout_ms)
      }
      this.waiters.push(w)
    })
  }

  /** Frees the slot taken by admit(); the oldest waiter gets it. */
  release(): void {
    this.active--
    const next = this.waiters.shift()
    if (next !== undefined) next.admit()
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
    const now = Date.now()
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
  resumeEjections(now = Date.now()): void {
    for (const m of this.members) if (m.ejectedUntil > now) this.scheduleReturn(m, m.ejectedUntil - now)
  }

  private scheduleReturn(m: Member, forMs: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t)
      this.onHealthEvent({ kind: 'returned', member: m })
      this.recompute()
    }, forMs + 1)
    t.unref()
    this.timers.add(t)
  }

  /**
   * Sets each member's `available` flag: healthy members only, unless fewer than the panic
   * threshold are healthy, then all of them (a partly working pool beats none).
   */
  recompute(now = Date.now()): void {
    let healthy = 0
    for (const m of this.members) if (m.healthy(now)) healthy++
    const panic = healthy * 100 < this.config.panic_threshold_percent * this.members.length
    for (const m of this.members) m.available = panic || m.healthy(now)
    if (panic !== this.panic) {
      this.panic = panic
      this.onHealthEvent({ kind: 'panic', on: panic, healthy, total: this.members.length })
    }
  }

  /** Stops ejection timers (the pool is being replaced or the app is closing). */
  dispose(): void {
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    // Requests still waiting on this pool are let through: the new config is live now.
    for (const w of this.waiters.splice(0)) w.admit()
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, balancer: this.balancerName, panic: this.panic, active: this.active, queued: this.waiters.length, members: this.members.map((m) => m.toJSON()) }
  }
}
