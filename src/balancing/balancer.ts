/** What a balancer needs to know about a pool member. Balancers do no I/O (DESIGN.md habit 4). */
export interface Candidate {
  /** Stable index of the member in its pool (0 .. pool size - 1). */
  readonly index: number
  /** Stable identity (the origin URL): hashing it keeps keys in place when others are removed. */
  readonly id: string
  readonly weight: number
  /** Requests currently outstanding at this member. */
  readonly inFlight: number
}

/**
 * Picks one member for a request. `eligible` holds the members it may choose now (healthy or
 * in panic, not yet tried for this request), in pool order; `all` is the whole pool, for
 * policies whose state spans every member (a hash ring, smooth weights). `key` is the hash key
 * for key-affine policies. Undefined only when `eligible` is empty.
 */
export interface Balancer {
  pick(eligible: readonly Candidate[], key: string | undefined, all: readonly Candidate[]): Candidate | undefined
}
