/**
 * Checks of the `forward` section and of `mode: forward` listeners that the schema cannot
 * express (address ranges, regular expressions, files, unique names). Pure but for reading
 * whether the block list files exist; reads the data defensively, as load.ts's other checks.
 */
import { accessSync, constants } from 'node:fs'
import { isIP } from 'node:net'
import { resolve as resolvePath } from 'node:path'
import { isMapping } from './schema-walk.js'

interface Issue { path: (string | number)[]; message: string }

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : []
}

function validCidr(s: string): boolean {
  const [addr, bits] = s.split('/')
  const v = isIP(addr ?? '')
  if (v === 0) return false
  if (bits === undefined) return true
  const n = Number(bits)
  return /^\d+$/.test(bits) && n <= (v === 4 ? 32 : 128)
}

const HASH = /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/

/** Block list files are relative to the config file, wherever the process runs. */
export function resolveForwardFiles(data: Record<string, unknown>, dir: string): void {
  const f = data.forward
  if (!isMapping(f) || !isMapping(f.filters) || !Array.isArray(f.filters.blocklists)) return
  f.filters.blocklists = f.filters.blocklists.map((p: unknown) => (typeof p === 'string' && p !== '' ? resolvePath(dir, p) : p))
}

function checkRules(rules: unknown, at: (string | number)[], issues: Issue[]): void {
  list(rules).forEach((r, i) => {
    if (!isMapping(r)) return
    if (r.host !== undefined && r.cidr !== undefined) issues.push({ path: [...at, i], message: 'give host or cidr, not both (a name is judged before it is resolved, an address range after)' })
    if (typeof r.cidr === 'string' && !validCidr(r.cidr)) issues.push({ path: [...at, i, 'cidr'], message: `expected an IP address or CIDR such as 10.0.0.0/8, got ${JSON.stringify(r.cidr)}` })
  })
}

export function checkForward(c: Record<string, unknown>): Issue[] {
  const issues: Issue[] = []
  list(c.listen).forEach((l, i) => {
    if (!isMapping(l) || l.mode !== 'forward') return
    if (l.protocol !== undefined && l.protocol !== 'http') issues.push({ path: ['listen', i, 'mode'], message: `mode: forward is for http listeners (this one is ${String(l.protocol)})` })
    for (const key of ['tls', 'redirect_https']) if (l[key] !== undefined) issues.push({ path: ['listen', i, key], message: 'not used by a forward listener (clients speak plain HTTP/1.1 to it; https:// goes through CONNECT)' })
    if (l.h2c === true) issues.push({ path: ['listen', i, 'h2c'], message: 'not used by a forward listener (CONNECT tunnels are HTTP/1.1)' })
  })
  const f = c.forward
  if (!isMapping(f)) return issues
  list(f.clients).forEach((cidr, i) => {
    if (typeof cidr === 'string' && !validCidr(cidr)) issues.push({ path: ['forward', 'clients', i], message: `expected an IP address or CIDR such as 10.0.0.0/8, got ${JSON.stringify(cidr)}` })
  })
  checkRules(f.allow, ['forward', 'allow'], issues)
  checkRules(f.deny, ['forward', 'deny'], issues)
  const names = new Set<string>()
  list(f.users).forEach((u, i) => {
    if (!isMapping(u)) return
    if (typeof u.name === 'string') {
      if (names.has(u.name)) issues.push({ path: ['forward', 'users', i, 'name'], message: `duplicate user ${JSON.stringify(u.name)}` })
      names.add(u.name)
    }
    if (typeof u.password_hash === 'string' && u.password_hash.startsWith('scrypt$') && !HASH.test(u.password_hash)) {
      issues.push({ path: ['forward', 'users', i, 'password_hash'], message: 'expected scrypt$N$r$p$salt$hash (base64 salt and hash), as `switchyard hash-password` prints' })
    }
    checkRules(u.allow, ['forward', 'users', i, 'allow'], issues)
    checkRules(u.deny, ['forward', 'users', i, 'deny'], issues)
  })
  const filters = isMapping(f.filters) ? f.filters : {}
  list(filters.paths).forEach((p, i) => {
    if (typeof p !== 'string') return
    try {
      new RegExp(p)
    } catch (err) {
      issues.push({ path: ['forward', 'filters', 'paths', i], message: `expected a regular expression: ${(err as Error).message}` })
    }
  })
  list(filters.blocklists).forEach((p, i) => {
    if (typeof p !== 'string' || p === '') return
    try {
      accessSync(p, constants.R_OK)
    } catch {
      issues.push({ path: ['forward', 'filters', 'blocklists', i], message: `cannot read block list file ${p}` })
    }
  })
  return issues
}
