import type { Balancer, Candidate } from './balancer.js'
import { hash32 } from './hash.js'

const POINTS_PER_WEIGHT = 160

/**
 * Consistent hashing on a ring (Karger et al.; ketama's 160 points per member): a key goes to
 * the first point clockwise from its hash whose member is eligible. The ring always spans the
 * whole pool, so removing, ejecting or having tried a member moves only the keys that were on
 * its points.
 */
export class ConsistentHashBalancer implements Balancer {
  private ringFor: readonly Candidate[] | undefined
  private points = new Uint32Array(0)
  private owners = new Uint32Array(0)
  private fallback = 0
  /** Eligibility by member index for the current pick (reused, no allocation per request). */
  private mask = new Uint8Array(0)

  pick(eligible: readonly Candidate[], key: string | undefined, all: readonly Candidate[]): Candidate | undefined {
    if (eligible.length === 0) return undefined
    // No key: behave like round-robin rather than sending every keyless request to one member.
    if (key === undefined) return eligible[this.fallback++ % eligible.length]
    if (this.ringFor !== all) this.build(all)
    const h = hash32(key)
    const pts = this.points
    let lo = 0
    let hi = pts.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (pts[mid] < h) lo = mid + 1
      else hi = mid
    }
    if (eligible.length === all.length) return all[this.owners[lo % pts.length]]
    const mask = this.mask
    mask.fill(0)
    for (const m of eligible) mask[m.index] = 1
    for (let k = 0; k < pts.length; k++) {
      const owner = this.owners[(lo + k) % pts.length]
      if (mask[owner] === 1) return all[owner]
    }
    return undefined
  }

  private build(members: readonly Candidate[]): void {
    const pairs: [number, number][] = []
    for (const m of members) {
      const n = POINTS_PER_WEIGHT * m.weight
      for (let p = 0; p < n; p++) pairs.push([hash32(`${m.id}-${p}`), m.index])
    }
    pairs.sort((a, b) => a[0] - b[0])
    this.points = Uint32Array.from(pairs, (p) => p[0])
    this.owners = Uint32Array.from(pairs, (p) => p[1])
    this.mask = new Uint8Array(members.length)
    this.ringFor = members
  }
}
