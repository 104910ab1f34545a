/**
 * A set of IPv4 and IPv6 ranges, checked per request. node:net's BlockList does the same job
 * but costs about 8 us a check here (it crosses into C++ and builds address objects), which
 * would make a CIDR rule the dearest part of a request; this parses the address in JavaScript
 * and compares 32-bit words (about 0.1 us).
 */
import { parseCidr } from '../config/load.js'

interface Range {
  /** The network's 32-bit words (1 for IPv4, 4 for IPv6). */
  readonly words: Uint32Array
  readonly prefix: number
}

export class CidrSet {
  /** IPv4 ranges as (network, mask) pairs: a check allocates nothing. */
  private readonly v4: number[] = []
  private readonly v6: Range[] = []

  /** Adds a range ("10.0.0.0/8", "2001:db8::/32", or one address); false when it is not one. */
  add(cidr: string): boolean {
    const p = parseCidr(cidr)
    if (p === undefined) return false
    if (p.family === 'ipv4') {
      const word = ipv4Word(p.address, 0, p.address.length)
      if (word === undefined) return false
      const mask = p.prefix === 0 ? 0 : (0xffffffff << (32 - p.prefix)) >>> 0
      this.v4.push(((word & mask) >>> 0), mask)
      return true
    }
    const words = ipv6Words(p.address)
    if (words === undefined) return false
    this.v6.push({ words, prefix: p.prefix })
    return true
  }

  has(ip: string): boolean {
    if (!ip.includes(':')) {
      const w = ipv4Word(ip, 0, ip.length)
      return w !== undefined && this.hasV4(w)
    }
    const words = ipv6Words(ip)
    if (words === undefined) return false
    // An IPv4-mapped address (::ffff:a.b.c.d, or ::ffff:7f00:1) is the IPv4 address (RFC 4291
    // section 2.5.5.2): IPv4 rules apply to it, so a hop written that way cannot slip past them.
    if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff && this.hasV4(words[3])) return true
    for (const r of this.v6) if (inRange(words, r)) return true
    return false
  }

  private hasV4(w: number): boolean {
    const v4 = this.v4
    for (let i = 0; i < v4.length; i += 2) if (((w & v4[i + 1]) >>> 0) === v4[i]) return true
    return false
  }
}

function inRange(words: Uint32Array, r: Range): boolean {
  let bits = r.prefix
  for (let i = 0; bits > 0; i++, bits -= 32) {
    const mask = bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0
    if (((words[i] & mask) >>> 0) !== ((r.words[i] & mask) >>> 0)) return false
  }
  return true
}

/** "a.b.c.d" as one word, or undefined. */
function ipv4Word(s: string, from: number, to: number): number | undefined {
  let word = 0
  let part = 0
  let digits = 0
  let dots = 0
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (c === 46) {
      if (digits === 0) return undefined
      word = word * 256 + part
      part = 0
      digits = 0
      dots++
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48)
      digits++
      if (part > 255) return undefined
    } else {
      return undefined
    }
  }
  if (dots !== 3 || digits === 0) return undefined
  return word * 256 + part
}

/** An IPv6 address (with "::", a dotted IPv4 tail, a %zone) as four words, or undefined. */
function ipv6Words(s: string): Uint32Array | undefined {
  const zone = s.indexOf('%')
  const text = zone < 0 ? s : s.slice(0, zone)
  const groups: number[] = []
  let gap = -1
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  for (let h = 0; h < halves.length; h++) {
    if (h === 1) gap = groups.length
    if (halves[h] === '') continue
    const parts = halves[h].split(':')
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]
      if (i === parts.length - 1 && part.includes('.') && h === halves.length - 1) {
        const v4 = ipv4Word(part, 0, part.length)
        if (v4 === undefined) return undefined
        groups.push(Math.floor(v4 / 65536), v4 % 65536)
        continue
      }
      if (!/^[0-9A-Fa-f]{1,4}$/.test(part)) return undefined
      groups.push(parseInt(part, 16))
    }
  }
  if (gap < 0 ? groups.length !== 8 : groups.length > 7) return undefined
  if (gap >= 0) groups.splice(gap, 0, ...new Array<number>(8 - groups.length).fill(0))
  const words = new Uint32Array(4)
  for (let i = 0; i < 4; i++) words[i] = (groups[2 * i] * 65536 + groups[2 * i + 1]) >>> 0
  return words
}
