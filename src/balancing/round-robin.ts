import type { Balancer, Candidate } from './balancer.js'

/** Plain rotation over available members, ignoring weights. */
export class RoundRobinBalancer implements Balancer {
  private next = 0

  pick(members: readonly Candidate[]): Candidate | undefined {
    const n = members.length
    for (let tries = 0; tries < n; tries++) {
      const m = members[this.next % n]
      this.next = (this.next + 1) % n
      if (m.available) return m
    }
    return undefined
  }
}
