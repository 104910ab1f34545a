import type { Candidate } from '../balancing/balancer.js'
import type { MemberConfig } from '../config/schema.js'

/** A member's state for the admin API and the status page. */
export interface MemberView {
  name: string
  url: string
  weight: number
  available: boolean
  healthy: boolean
  drained: boolean
  health_check: 'up' | 'down'
  last_check: string | null
  ejected_for_ms: number
  ejections: number
  in_flight: number
  /** Requests sent to it since start (kept across reloads). */
  requests: number
  /** Failed exchanges (connect error, reset, timeout, 5xx) since start. */
  failures: number
}

/** One upstream of a pool, with its health state and the live counters balancers and /admin/pools read. */
export class Member implements Candidate {
  readonly index: number
  readonly id: string
  readonly name: string
  /** scheme://host:port, no trailing slash. */
  readonly origin: string
  /** host:port as sent in Host when the pool rewrites it. */
  readonly host: string
  readonly hostname: string
  readonly port: number
  readonly weight: number
  /** http for http(s):// members; tcp or udp for the members of an L4 pool. */
  readonly protocol: 'http' | 'tcp' | 'udp'
  /**
   * Requests outstanding (http), or open connections (tcp) and sessions (udp). The counter is
   * shared with this member's successor after a reload (adopt), so what started before the
   * reload, such as a long-lived tunnel, still counts for least_request / least_connections.
   */
  get inFlight(): number {
    return this.load.n
  }

  set inFlight(n: number) {
    this.load.n = n
  }

  private load = { n: 0 }
  /** Whether balancers may pick it; computed by the pool from health, ejection and panic mode. */
  available = true
  requests = 0
  failures = 0
  /** Verdict of the active health check (true until a check says otherwise). */
  checkUp = true
  checkPasses = 0
  checkFails = 0
  lastCheck: string | undefined = undefined
  /** Passive health: consecutive failed exchanges, and the current ejection. */
  consecutiveFailures = 0
  ejectedUntil = 0
  ejections = 0
  /** Drained by hand (POST /admin/pools/<pool>/members/<member>/drain): no new requests, in-flight ones finish. */
  drained = false

  constructor(index: number, cfg: MemberConfig) {
    const u = new URL(cfg.url)
    this.index = index
    this.protocol = u.protocol === 'tcp:' ? 'tcp' : u.protocol === 'udp:' ? 'udp' : 'http'
    // URL.origin is "null" for schemes the URL standard does not know (tcp:, udp:).
    this.origin = this.protocol === 'http' ? u.origin : `${u.protocol}//${u.host}`
    this.id = this.origin
    this.host = u.host
    this.hostname = u.hostname.replace(/^\[|\]$/g, '')
    this.port = Number(u.port || (u.protocol === 'https:' ? 443 : 80))
    this.name = cfg.name ?? u.host
    this.weight = cfg.weight
  }

  /** Healthy by both active checks and passive outlier detection. */
  healthy(now: number): boolean {
    return this.checkUp && this.ejectedUntil <= now
  }

  /** Keeps health state and counters across a config reload (same pool, same origin). */
  adopt(prev: Member): void {
    this.load = prev.load
    this.requests = prev.requests
    this.failures = prev.failures
    this.checkUp = prev.checkUp
    this.checkPasses = prev.checkPasses
    this.checkFails = prev.checkFails
    this.lastCheck = prev.lastCheck
    this.consecutiveFailures = prev.consecutiveFailures
    this.ejectedUntil = prev.ejectedUntil
    this.ejections = prev.ejections
    this.available = prev.available
    this.drained = prev.drained
  }

  /** The member's state as /admin/pools and the status page show it. */
  view(now = Date.now()): MemberView {
    return {
      name: this.name,
      url: this.origin,
      weight: this.weight,
      available: this.available,
      healthy: this.healthy(now),
      drained: this.drained,
      health_check: this.checkUp ? 'up' : 'down',
      last_check: this.lastCheck ?? null,
      ejected_for_ms: Math.max(0, this.ejectedUntil - now),
      ejections: this.ejections,
      in_flight: this.inFlight,
      requests: this.requests,
      failures: this.failures
    }
  }

  toJSON(): MemberView {
    return this.view()
  }
}
