/** What a balancer needs to know about a pool member. Balancers do no I/O (DESIGN.md habit 4). */
export interface Candidate {
  /** Stable index of the member in its pool. */
  readonly index: number
  /** Stable identity (the origin URL): hashing it keeps keys in place when others are removed. */
  readonly id: string
  readonly weight: number
  /** Requests currently outstanding at this member. */
  readonly inFlight: number
  /** Whether the member may receive traffic now (health checks, ejection). */
  readonly available: boolean
}

/** Picks one member of a pool for a request; `key` is the hash key for key-affine policies. */
export interface Balancer {
  pick(members: readonly Candidate[], key: string | undefined): Candidate | undefined
}
