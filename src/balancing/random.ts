import type { Balancer, Candidate } from './balancer.js'

/** Weighted random choice among the eligible members. */
export class RandomBalancer implements Balancer {
  constructor(private readonly rand: () => number = Math.random) {}

  pick(eligible: readonly Candidate[]): Candidate | undefined {
    let total = 0
    for (const m of eligible) total += m.weight
    if (total === 0) return undefined
    let r = this.rand() * total
    for (const m of eligible) {
      r -= m.weight
      if (r < 0) return m
    }
    return eligible[eligible.length - 1]
  }
}
