import type { Candidate } from '../balancing/balancer.js'
import type { MemberConfig } from '../config/schema.js'

/** One upstream of a pool, with the live counters balancers and /admin/pools read. */
export class Member implements Candidate {
  readonly index: number
  readonly name: string
  /** scheme://host:port, no trailing slash. */
  readonly origin: string
  /** host:port as sent in Host when the pool rewrites it. */
  readonly host: string
  readonly weight: number
  inFlight = 0
  available = true
  requests = 0
  failures = 0

  constructor(index: number, cfg: MemberConfig) {
    const u = new URL(cfg.url)
    this.index = index
    this.origin = u.origin
    this.host = u.host
    this.name = cfg.name ?? u.host
    this.weight = cfg.weight
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      url: this.origin,
      weight: this.weight,
      available: this.available,
      in_flight: this.inFlight,
      requests: this.requests,
      failures: this.failures
    }
  }
}
