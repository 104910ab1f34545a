import type { IncomingHttpHeaders } from 'node:http'
import type { Balancer } from '../balancing/balancer.js'
import { readCookie } from '../balancing/cookie.js'
import { createBalancer } from '../balancing/registry.js'
import type { PoolConfig } from '../config/schema.js'
import { Member } from './member.js'

/** A named group of upstreams with its balancer and forwarding settings. */
export class Pool {
  readonly name: string
  readonly members: readonly Member[]
  readonly balancerName: string
  readonly preserveHost: boolean
  readonly requestTimeoutMs: number
  private readonly balancer: Balancer
  private readonly hashHeader: string | undefined
  private readonly hashCookie: string | undefined

  constructor(name: string, cfg: PoolConfig) {
    this.name = name
    this.members = cfg.members.map((m, i) => new Member(i, m))
    this.balancerName = cfg.balancer
    this.balancer = createBalancer(cfg.balancer)
    this.preserveHost = cfg.host_header === 'preserve'
    this.requestTimeoutMs = cfg.timeouts.request_ms
    this.hashHeader = cfg.hash_on?.header?.toLowerCase()
    this.hashCookie = cfg.hash_on?.cookie
  }

  /** Picks a member for a request, or undefined when none is available. */
  pick(headers: IncomingHttpHeaders, clientIp: string): Member | undefined {
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
    return this.balancer.pick(this.members, key) as Member | undefined
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, balancer: this.balancerName, members: this.members.map((m) => m.toJSON()) }
  }
}
