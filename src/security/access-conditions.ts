/**
 * The conditions of an access rule (`when` / `unless`), compiled once per config load into one
 * predicate: CIDRs (cidr-set.ts), methods (a Set), path prefixes and regular expressions, header
 * checks. Pure: no I/O.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { AccessConditionsConfig } from '../config/schema.js'
import { CidrSet } from './cidr-set.js'

/** What the firewall reads of a request (RoutedRequest has all of it). */
export interface FirewallRequest {
  readonly method: string
  /** The normalised path, without the query (request-edge.ts). */
  readonly path: string
  readonly headers: IncomingHttpHeaders
  /** The client address after trusted_proxies. */
  readonly clientIp: string
}

/** `user`: who an earlier basic or jwt rule authenticated, if any. */
export type Condition = (req: FirewallRequest, user: string | undefined) => boolean

/** Field values as one string: several lines of one field join with ", " (RFC 9110 section 5.3). */
export function fieldValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name]
  return v === undefined ? undefined : Array.isArray(v) ? v.join(', ') : v
}

/** One predicate for a condition block: every condition given must hold. */
export function compileConditions(c: AccessConditionsConfig): Condition {
  const checks: Condition[] = []
  if (c.cidrs !== undefined) {
    const set = new CidrSet()
    for (const s of c.cidrs) set.add(s)
    checks.push((req) => set.has(req.clientIp))
  }
  if (c.methods !== undefined) {
    // GET covers HEAD, as nginx's limit_except does: a HEAD is answered from the GET's response
    // (and from its cached copy), so a rule about GET that let HEAD through would leak its fields.
    const methods = new Set(c.methods.includes('GET') ? [...c.methods, 'HEAD'] : c.methods)
    checks.push((req) => methods.has(req.method))
  }
  if (c.paths !== undefined) {
    const prefixes = c.paths.filter((p) => !p.startsWith('~'))
    const patterns = c.paths.filter((p) => p.startsWith('~')).map((p) => new RegExp(p.slice(1)))
    checks.push((req) => {
      for (const p of prefixes) if (req.path.startsWith(p)) return true
      for (const re of patterns) if (re.test(req.path)) return true
      return false
    })
  }
  if (c.headers !== undefined) {
    for (const [field, hc] of Object.entries(c.headers)) {
      const name = field.toLowerCase()
      if (hc.present !== undefined) {
        const want = hc.present
        checks.push((req) => (req.headers[name] !== undefined) === want)
      } else if (hc.equals !== undefined) {
        const want = hc.equals
        checks.push((req) => fieldValue(req.headers, name) === want)
      } else if (hc.matches !== undefined) {
        const re = new RegExp(hc.matches)
        checks.push((req) => {
          const v = fieldValue(req.headers, name)
          return v !== undefined && re.test(v)
        })
      }
    }
  }
  if (c.users !== undefined) {
    const users = new Set(c.users)
    checks.push((_req, user) => user !== undefined && users.has(user))
  }
  if (checks.length === 0) return () => true
  if (checks.length === 1) return checks[0]
  return (req, user) => {
    for (const check of checks) if (!check(req, user)) return false
    return true
  }
}
