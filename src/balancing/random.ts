import type { Balancer, Candidate } from './balancer.js'

/** Weighted random choice among available members. */
export class RandomBalancer implements Balancer {
  constructor(private readonly rand: () => number = Math.random) {}

  pick(members: readonly Candidate[]): Candidate | undefined {
    let total = 0
    for (const m of members) if (m.available) total += m.weight
    if (total === 0) return undefined
    let r = this.rand() * total
    let last: Candidate | undefined
    for (const m of members) {
      if (!m.available) continue
      last = m
      r -= m.weight
      if (r < 0) return m
    }
    return last
  }
}
