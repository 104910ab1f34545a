/**
 * Bearer JWT checks (RFC 6750, RFC 7519) through jose: HS256 with a shared secret, RS256/ES256
 * with the public keys of a JWKS file (RFC 7517), read when the config is loaded or reloaded
 * (createLocalJWKSet: no network fetch on the request path). Issuer, audience, required claims
 * and clock tolerance are jose's jwtVerify options; claim values are checked here.
 */
import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose'
import type { AccessRuleConfig } from '../config/schema.js'

type JwtConfig = NonNullable<AccessRuleConfig['jwt']>

export type JwtOutcome =
  | { readonly ok: true; readonly user: string | undefined }
  | { readonly ok: false; readonly reason: 'missing_credentials' | 'invalid_token' | 'insufficient_claims'; readonly detail: string }

const MISSING: JwtOutcome = Object.freeze({ ok: false, reason: 'missing_credentials', detail: 'a bearer token is required' })
/** RFC 6750 section 2.1: `Bearer` b64token. */
const BEARER = /^bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*$/i

export class JwtConfigError extends Error {}

export class JwtCheck {
  /** RFC 6750 section 3: the challenge without an error code, for a request without a token. */
  readonly challenge: string
  readonly realm: string
  private readonly key: Uint8Array | JWTVerifyGetKey
  private readonly options: JWTVerifyOptions
  private readonly claims: readonly [string, readonly string[]][]

  constructor(cfg: JwtConfig) {
    this.realm = cfg.realm
    this.challenge = `Bearer realm="${cfg.realm}"`
    if (cfg.secret !== undefined) {
      this.key = new TextEncoder().encode(cfg.secret)
    } else {
      this.key = createLocalJWKSet(readJwks(cfg.jwks_file ?? ''))
    }
    this.options = {
      algorithms: cfg.algorithms ?? (cfg.secret !== undefined ? ['HS256'] : ['RS256', 'ES256']),
      issuer: cfg.issuer,
      audience: cfg.audience,
      requiredClaims: cfg.required_claims,
      clockTolerance: cfg.clock_tolerance_s
    }
    this.claims = Object.entries(cfg.claims ?? {}).map(([k, v]) => [k, Array.isArray(v) ? v : [v]])
  }

  /** The challenge of a 401 or 403 with an error code (RFC 6750 section 3.1). */
  errorChallenge(error: 'invalid_token' | 'insufficient_scope', description: string): string {
    // RFC 6750 section 3: error_description is visible ASCII without quotes and backslashes.
    return `Bearer realm="${this.realm}", error="${error}", error_description="${description.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '')}"`
  }

  check(headers: IncomingHttpHeaders): JwtOutcome | Promise<JwtOutcome> {
    const auth = headers.authorization
    if (auth === undefined) return MISSING
    const m = BEARER.exec(auth)
    if (m === null) return MISSING
    // jose's overloads differ by key type; both are valid here.
    const verified = typeof this.key === 'function' ? jwtVerify(m[1], this.key, this.options) : jwtVerify(m[1], this.key, this.options)
    return verified.then(({ payload }) => this.claimsHold(payload), (err: unknown) => ({ ok: false, reason: 'invalid_token', detail: describe(err) }) as const)
  }

  private claimsHold(payload: JWTPayload): JwtOutcome {
    for (const [name, wanted] of this.claims) {
      if (!claimHas(payload[name], wanted)) return { ok: false, reason: 'insufficient_claims', detail: `claim ${name} lacks ${wanted.join(' or ')}` }
    }
    return { ok: true, user: typeof payload.sub === 'string' ? payload.sub : undefined }
  }
}

/** A claim holds a wanted value: equal, an array containing it, or a space-separated list (OAuth scope). */
function claimHas(value: unknown, wanted: readonly string[]): boolean {
  if (typeof value === 'string') {
    if (wanted.includes(value)) return true
    const words = value.split(' ')
    return words.length > 1 && words.some((w) => wanted.includes(w))
  }
  if (Array.isArray(value)) return value.some((v) => typeof v === 'string' && wanted.includes(v))
  if (typeof value === 'number' || typeof value === 'boolean') return wanted.includes(String(value))
  return false
}

/** A short, safe description of why jose refused a token (its code, not the token). */
function describe(err: unknown): string {
  const code = (err as { code?: string }).code
  switch (code) {
    case 'ERR_JWT_EXPIRED': return 'the token has expired'
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': return `claim ${String((err as { claim?: string }).claim ?? '')} is not valid`
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED': return 'signature verification failed'
    case 'ERR_JWKS_NO_MATCHING_KEY': return 'no key matches the token'
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS': return 'several keys match the token (give it a kid)'
    case 'ERR_JOSE_ALG_NOT_ALLOWED': return 'the token algorithm is not accepted'
    default: return 'the token is malformed'
  }
}

function readJwks(file: string): JSONWebKeySet {
  let json: unknown
  try {
    json = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new JwtConfigError(`jwks_file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  if (json === null || typeof json !== 'object' || !Array.isArray((json as { keys?: unknown }).keys)) {
    throw new JwtConfigError(`jwks_file ${file}: expected a JWK Set ({"keys": [...]}, RFC 7517 section 5)`)
  }
  return json as JSONWebKeySet
}
