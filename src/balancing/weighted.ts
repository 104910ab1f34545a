import type { Balancer, Candidate } from './balancer.js'

/**
 * Smooth weighted round-robin, as nginx's ngx_http_upstream_get_peer: each pick adds every
 * member's weight to its current weight, takes the largest, and subtracts the total from it.
 * Weights 5,1,1 give a b a c a a a ... instead of a a a a a b c (no bursts to one member).
 */
export class WeightedBalancer implements Balancer {
  private current: number[] = []

  pick(members: readonly Candidate[]): Candidate | undefined {
    if (this.current.length !== members.length) this.current = new Array<number>(members.length).fill(0)
    let best: Candidate | undefined
    let total = 0
    for (let i = 0; i < members.length; i++) {
      const m = members[i]
      if (!m.available) continue
      this.current[i] += m.weight
      total += m.weight
      if (best === undefined || this.current[i] > this.current[best.index]) best = m
    }
    if (best !== undefined) this.current[best.index] -= total
    return best
  }
}
