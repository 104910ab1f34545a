import type { Balancer, Candidate } from './balancer.js'

/**
 * Power of two choices (Mitzenmacher; Envoy's LEAST_REQUEST): pick two distinct available
 * members at random and take the one with fewer in-flight requests per unit of weight.
 * Avoids the herd that a global "least loaded" pick sends to one member.
 */
export class LeastRequestBalancer implements Balancer {
  private scratch: Candidate[] = []

  constructor(private readonly rand: () => number = Math.random) {}

  pick(members: readonly Candidate[]): Candidate | undefined {
    const avail = this.scratch
    avail.length = 0
    for (const m of members) if (m.available) avail.push(m)
    const n = avail.length
    if (n <= 1) return avail[0]
    const i = Math.floor(this.rand() * n)
    let j = Math.floor(this.rand() * (n - 1))
    if (j >= i) j++
    const a = avail[i]
    const b = avail[j]
    // Compare inFlight/weight without division: a.inFlight * b.weight vs b.inFlight * a.weight.
    const la = a.inFlight * b.weight
    const lb = b.inFlight * a.weight
    if (la === lb) return this.rand() < a.weight / (a.weight + b.weight) ? a : b
    return la < lb ? a : b
  }
}
