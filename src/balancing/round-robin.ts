import type { Balancer, Candidate } from './balancer.js'

/** Plain rotation over the eligible members, ignoring weights. */
export class RoundRobinBalancer implements Balancer {
  private next = 0

  pick(eligible: readonly Candidate[]): Candidate | undefined {
    const n = eligible.length
    if (n === 0) return undefined
    const m = eligible[this.next % n]
    this.next = (this.next + 1) % 1073741824
    return m
  }
}
