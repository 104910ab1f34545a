import type { Balancer, Candidate } from './balancer.js'

/**
 * Power of two choices (Mitzenmacher; Envoy's LEAST_REQUEST): pick two distinct eligible
 * members at random and take the one with fewer in-flight requests per unit of weight.
 * Avoids the herd that a global "least loaded" pick sends to one member.
 */
export class LeastRequestBalancer implements Balancer {
  constructor(private readonly rand: () => number = Math.random) {}

  pick(eligible: readonly Candidate[]): Candidate | undefined {
    const n = eligible.length
    if (n <= 1) return eligible[0]
    const i = Math.floor(this.rand() * n)
    let j = Math.floor(this.rand() * (n - 1))
    if (j >= i) j++
    const a = eligible[i]
    const b = eligible[j]
    // Compare inFlight/weight without division: a.inFlight * b.weight vs b.inFlight * a.weight.
    const la = a.inFlight * b.weight
    const lb = b.inFlight * a.weight
    if (la === lb) return this.rand() < a.weight / (a.weight + b.weight) ? a : b
    return la < lb ? a : b
  }
}
