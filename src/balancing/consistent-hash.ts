import type { Balancer, Candidate } from './balancer.js'
import { hash32 } from './hash.js'

const POINTS_PER_WEIGHT = 160

/**
 * Consistent hashing on a ring (Karger et al.; ketama's 160 points per member): a key goes to
 * the first point clockwise from its hash whose member is available. Removing or ejecting a
 * member moves only the keys that were on its points.
 */
export class ConsistentHashBalancer implements Balancer {
  private ringFor: readonly Candidate[] | undefined
  private points = new Uint32Array(0)
  private owners = new Uint32Array(0)
  private fallback = 0

  pick(members: readonly Candidate[], key: string | undefined): Candidate | undefined {
    if (members.length === 0) return undefined
    if (this.ringFor !== members) this.build(members)
    if (key === undefined) {
      // No key: behave like round-robin rather than sending every keyless request to one member.
      for (let t = 0; t < members.length; t++) {
        const m = members[this.fallback++ % members.length]
        if (m.available) return m
      }
      return undefined
    }
    const h = hash32(key)
    const pts = this.points
    let lo = 0
    let hi = pts.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (pts[mid] < h) lo = mid + 1
      else hi = mid
    }
    for (let k = 0; k < pts.length; k++) {
      const m = members[this.owners[(lo + k) % pts.length]]
      if (m.available) return m
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
    this.ringFor = members
  }
}
