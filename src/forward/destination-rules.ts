/**
 * Destination rules of the forward proxy, compiled once per config (pure: no sockets, no DNS).
 * A rule matches a host name before any lookup (exact, *.domain, *), and an address (an address
 * target, or what a name resolved to when connecting) by CIDR. Special-purpose addresses
 * (RFC 6890) are refused unless a rule names them explicitly: the SSRF guard.
 */
import { BlockList, isIP } from 'node:net'
import type { ForwardRuleConfig } from '../config/schema.js'
import { parseCidr } from '../config/load.js'

export interface DestinationRule {
  /** Where it is configured, as the refusal names it: "forward.deny[2]". */
  readonly id: string
  /** What it says, as the refusal shows it: "host *.example.com". */
  readonly text: string
  readonly exact: string | undefined
  /** "*.example.com" is kept as ".example.com" (matches example.com and every subdomain). */
  readonly suffix: string | undefined
  readonly anyHost: boolean
  readonly cidr: BlockList | undefined
  readonly ports: ReadonlySet<number> | undefined
}

/** An address family as BlockList names it. */
function family(ip: string): 'ipv4' | 'ipv6' {
  return isIP(ip) === 6 ? 'ipv6' : 'ipv4'
}

const MAPPED_HEX = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/

/**
 * ::ffff:10.0.0.1 and ::ffff:a00:1 are 10.0.0.1: IPv4-mapped addresses (RFC 4291 section
 * 2.5.5.2), in either spelling, are judged as the IPv4 address they carry. The one helper every
 * address check goes through (rules, SSRF guard, the connected socket's address).
 */
export function unmapAddress(ip: string): string {
  let a = ip.toLowerCase()
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1)
  if (!a.includes('ffff') || isIP(a) !== 6) return a
  // The WHATWG serialiser compresses and writes the mapped IPv4 part in hex: one form to match.
  let canonical: string
  try {
    canonical = new URL(`http://[${a}]`).hostname.slice(1, -1)
  } catch {
    return a
  }
  const m = MAPPED_HEX.exec(canonical)
  if (m === null) return a
  const hi = parseInt(m[1], 16)
  const lo = parseInt(m[2], 16)
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
}

export function compileRules(rules: readonly ForwardRuleConfig[], at: string): DestinationRule[] {
  return rules.map((r, i) => {
    const parts: string[] = []
    let exact: string | undefined
    let suffix: string | undefined
    let anyHost = false
    if (r.host !== undefined) {
      const h = r.host.toLowerCase()
      parts.push(`host ${h}`)
      if (h === '*') anyHost = true
      else if (h.startsWith('*.')) suffix = h.slice(1)
      else exact = isIP(unmapAddress(h)) !== 0 ? unmapAddress(h) : h.replace(/\.$/, '')
    }
    let cidr: BlockList | undefined
    if (r.cidr !== undefined) {
      const c = parseCidr(r.cidr)
      parts.push(`cidr ${r.cidr}`)
      if (c !== undefined) {
        cidr = new BlockList()
        cidr.addSubnet(c.address, c.prefix, c.family)
      }
    }
    if (r.ports !== undefined) parts.push(`ports ${r.ports.join(',')}`)
    return { id: `${at}[${i}]`, text: parts.join(', ') || 'any destination', exact, suffix, anyHost, cidr, ports: r.ports === undefined ? undefined : new Set(r.ports) }
  })
}

/** A name matches a rule's host part (a rule with only a CIDR never matches a name: it needs its address). */
export function matchesName(rule: DestinationRule, name: string, port: number): boolean {
  if (rule.ports !== undefined && !rule.ports.has(port)) return false
  if (rule.cidr !== undefined) return false
  if (rule.anyHost || (rule.exact === undefined && rule.suffix === undefined)) return true
  if (rule.exact !== undefined) return rule.exact === name
  const s = rule.suffix as string
  return name.endsWith(s) || name === s.slice(1)
}

/**
 * An address matches a rule's CIDR, or a host part naming that very address; `*` matches an
 * address target (`literal`), never an address a name resolved to (the name was judged already).
 */
export function matchesAddress(rule: DestinationRule, ip: string, port: number, literal: boolean): boolean {
  if (rule.ports !== undefined && !rule.ports.has(port)) return false
  if (rule.cidr !== undefined) return rule.cidr.check(ip, family(ip))
  if (rule.exact !== undefined) return rule.exact === ip
  if (rule.suffix !== undefined) return false
  return literal
}

/** Whether a rule names this address explicitly (its CIDR, or a host that is the address): may open the SSRF guard. */
export function namesAddress(rule: DestinationRule, ip: string, port: number): boolean {
  if (rule.ports !== undefined && !rule.ports.has(port)) return false
  if (rule.cidr !== undefined) return rule.cidr.check(ip, family(ip))
  return rule.exact === ip
}

const METADATA = new BlockList()
METADATA.addAddress('169.254.169.254', 'ipv4')
METADATA.addAddress('fd00:ec2::254', 'ipv6')
const SPECIAL: [string, string][] = [
  ['0.0.0.0/8', 'unspecified'], ['127.0.0.0/8', 'loopback'], ['10.0.0.0/8', 'private'], ['172.16.0.0/12', 'private'],
  ['192.168.0.0/16', 'private'], ['100.64.0.0/10', 'private'], ['169.254.0.0/16', 'link-local'], ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'], ['::/128', 'unspecified'], ['::1/128', 'loopback'], ['fc00::/7', 'private'],
  ['fe80::/10', 'link-local'], ['ff00::/8', 'multicast']
]
const SPECIAL_LISTS = SPECIAL.map(([c, kind]) => {
  const p = parseCidr(c) as NonNullable<ReturnType<typeof parseCidr>>
  const b = new BlockList()
  b.addSubnet(p.address, p.prefix, p.family)
  return { list: b, family: p.family, kind }
})

/**
 * The kind of special-purpose address `ip` is (RFC 6890, RFC 4193, RFC 4291), or undefined for
 * an ordinary public address: loopback, private (RFC 1918, CGNAT, unique local), link-local,
 * cloud metadata (AWS, GCP, Azure: 169.254.169.254; AWS IPv6: fd00:ec2::254), unspecified,
 * multicast, reserved.
 */
export function specialAddress(ip: string): string | undefined {
  const a = unmapAddress(ip)
  const f = family(a)
  if (METADATA.check(a, f)) return 'cloud metadata'
  for (const s of SPECIAL_LISTS) if (s.family === f && s.list.check(a, f)) return s.kind
  return undefined
}
