/**
 * HTTP Basic authentication (RFC 7617) against scrypt-hashed passwords (password-hash.ts).
 * scrypt costs tens of milliseconds by design, so credentials that verified are remembered (by
 * a SHA-256 of the Authorization value, never the password itself) for the life of the compiled
 * rule: a reload with new hashes starts afresh. Caddy's basic_auth keeps such a cache too.
 */
import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { parseHash, verifyPassword, type ParsedHash } from './password-hash.js'

export type AuthOutcome =
  | { readonly ok: true; readonly user: string }
  | { readonly ok: false; readonly reason: 'missing_credentials' | 'bad_credentials' }

const MISSING: AuthOutcome = Object.freeze({ ok: false, reason: 'missing_credentials' })
const BAD: AuthOutcome = Object.freeze({ ok: false, reason: 'bad_credentials' })
/** Verified credentials remembered per rule; the oldest goes first beyond this. */
const CACHE_ENTRIES = 1024
const BASIC = /^basic[ \t]+([A-Za-z0-9+/]+=*)[ \t]*$/i

export class BasicAuth {
  /** The WWW-Authenticate challenge of a 401 (RFC 7617 section 2.1: charset UTF-8). */
  readonly challenge: string
  private readonly users: ReadonlyMap<string, ParsedHash>
  /** Checked for unknown users, so they cost the same time as known ones. */
  private readonly decoy: ParsedHash | undefined
  private readonly verified = new Map<string, string>()

  constructor(realm: string, users: Readonly<Record<string, string>>) {
    this.challenge = `Basic realm="${realm}", charset="UTF-8"`
    const m = new Map<string, ParsedHash>()
    for (const [user, stored] of Object.entries(users)) {
      const h = parseHash(stored)
      if (h !== undefined) m.set(user, h)
    }
    this.users = m
    this.decoy = m.values().next().value
  }

  check(headers: IncomingHttpHeaders): AuthOutcome | Promise<AuthOutcome> {
    const auth = headers.authorization
    if (auth === undefined) return MISSING
    const m = BASIC.exec(auth)
    if (m === null) return MISSING
    const key = createHash('sha256').update(auth).digest('base64')
    const known = this.verified.get(key)
    if (known !== undefined) return { ok: true, user: known }
    const decoded = Buffer.from(m[1], 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon < 0) return BAD
    const user = decoded.slice(0, colon)
    const password = decoded.slice(colon + 1)
    const hash = this.users.get(user)
    const against = hash ?? this.decoy
    if (against === undefined) return BAD
    return verifyPassword(password, against).then((ok) => {
      if (!ok || hash === undefined) return BAD
      if (this.verified.size >= CACHE_ENTRIES) this.verified.delete(this.verified.keys().next().value as string)
      this.verified.set(key, user)
      return { ok: true, user }
    }, () => BAD)
  }
}
