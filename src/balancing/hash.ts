/**
 * 32-bit FNV-1a followed by murmur3's fmix32 finaliser: FNV alone clusters on keys that differ
 * only in their last characters (user-1, user-2, ...); the finaliser spreads them uniformly.
 */
export function hash32(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return fmix32(h)
}

/** murmur3's 32-bit finaliser: every input bit moves every output bit. */
export function fmix32(x: number): number {
  let h = x
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** A value in [0, 1) derived from a string, for weighted bucket choices. */
export function unitHash(s: string): number {
  return hash32(s) / 4294967296
}
