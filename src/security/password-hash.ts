/**
 * Password hashes for Basic credentials: scrypt (RFC 7914) from node:crypto, stored as
 * `scrypt$N$r$p$<salt base64>$<hash base64>`, for route Basic rules and forward proxy users alike
 * (`switchyard hash-password` writes them).
 * Verification runs scrypt off the event loop (libuv's thread pool) and compares in constant
 * time, so neither the answer time nor a blocked loop tells how close a guess was.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

export interface ParsedHash {
  readonly N: number
  readonly r: number
  readonly p: number
  readonly salt: Buffer
  readonly hash: Buffer
}

/** scrypt's memory is 128 * N * r bytes; Node refuses more than maxmem (32 MiB by default). */
const MAX_MEM = 256 * 1024 * 1024

/** The parts of a stored hash, or undefined when it is not one (N a power of two, sizes sane). */
export function parseHash(stored: string): ParsedHash | undefined {
  const parts = stored.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])]
  if (![N, r, p].every((n) => Number.isInteger(n) && n > 0)) return undefined
  // RFC 7914 section 2: N is a power of two greater than 1.
  // p is bounded too, so a typo cannot pin a CPU for seconds per login.
  if (N < 2 || (N & (N - 1)) !== 0 || 128 * N * r > MAX_MEM || p > 16) return undefined
  const salt = Buffer.from(parts[4], 'base64')
  const hash = Buffer.from(parts[5], 'base64')
  if (salt.length < 8 || hash.length < 16) return undefined
  return { N, r, p, salt, hash }
}

function derive(password: string | Buffer, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, opts, (err, key) => (err === null ? resolve(key) : reject(err)))
  })
}

/** True when `password` matches the stored hash; false for a wrong password or a malformed hash. */
export async function verifyPassword(password: string | Buffer, stored: string | ParsedHash): Promise<boolean> {
  const h = typeof stored === 'string' ? parseHash(stored) : stored
  if (h === undefined) return false
  const key = await derive(password, h.salt, h.hash.length, { N: h.N, r: h.r, p: h.p, maxmem: MAX_MEM })
  return timingSafeEqual(key, h.hash)
}

/** N=2^15, r=8, p=1: OWASP's password storage recommendation for scrypt (2023). */
export const SCRYPT_DEFAULTS = { N: 32768, r: 8, p: 1 } as const

/** A new hash for `password`: a 16-byte salt and a 32-byte hash. */
export async function hashPassword(password: string, opts: { N?: number; r?: number; p?: number } = {}): Promise<string> {
  const N = opts.N ?? SCRYPT_DEFAULTS.N
  const r = opts.r ?? SCRYPT_DEFAULTS.r
  const p = opts.p ?? SCRYPT_DEFAULTS.p
  const salt = randomBytes(16)
  const hash = await derive(password, salt, 32, { N, r, p, maxmem: MAX_MEM })
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${hash.toString('base64')}`
}
