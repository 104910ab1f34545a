import type { Balancer, Candidate } from './balancer.js'

/**
 * Smooth weighted round-robin, as nginx's ngx_http_upstream_get_peer: each pick adds every
 * eligible member's weight to its current weight, takes the largest, and subtracts the total
 * from it. Weights 5,1,1 give a b a c a a a ... instead of a a a a a b c (no bursts to one
 * member). Members not eligible (down, already tried) are skipped exactly as nginx skips them,
 * so the sequence over the remaining ones stays smooth and proportional.
 */
export class WeightedBalancer implements Balancer {
  private current = new Float64Array(0)

  pick(eligible: readonly Candidate[], _key: string | undefined, all: readonly Candidate[]): Candidate | undefined {
    if (this.current.length !== all.length) this.current = new Float64Array(all.length)
    let best: Candidate | undefined
    let total = 0
    const cur = this.current
    for (const m of eligible) {
      cur[m.index] += m.weight
      total += m.weight
      if (best === undefined || cur[m.index] > cur[best.index]) best = m
    }
    if (best !== undefined) cur[best.index] -= total
    return best
  }
}
