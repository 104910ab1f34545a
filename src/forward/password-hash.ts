/**
 * Password hashes for forward proxy users: scrypt (RFC 7914) from node:crypto, stored as
 * `scrypt$N$r$p$salt$hash` with salt and hash in base64. N=2^15, r=8, p=1 is OWASP's
 * password storage recommendation for scrypt (2023); verification compares in constant time.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

export const SCRYPT_DEFAULTS = { N: 32768, r: 8, p: 1 } as const
const KEY_BYTES = 32
const SALT_BYTES = 16

/** A parsed hash string; undefined when it is not one this module wrote. */
export interface ScryptHash {
  readonly N: number
  readonly r: number
  readonly p: number
  readonly salt: Buffer
  readonly hash: Buffer
}

export function parseScryptHash(s: string): ScryptHash | undefined {
  const parts = s.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])]
  // N must be a power of two above 1 (RFC 7914 section 2); bounds keep a typo from pinning a CPU.
  if (!Number.isInteger(N) || N < 2 || N > 2 ** 20 || (N & (N - 1)) !== 0) return undefined
  if (!Number.isInteger(r) || r < 1 || r > 32 || !Number.isInteger(p) || p < 1 || p > 16) return undefined
  const salt = Buffer.from(parts[4], 'base64')
  const hash = Buffer.from(parts[5], 'base64')
  if (salt.length < 8 || hash.length < 16) return undefined
  return { N, r, p, salt, hash }
}

function derive(password: string, salt: Buffer, keylen: number, o: ScryptOptions & { N: number; r: number; p: number }): Promise<Buffer> {
  // scrypt needs 128 * N * r bytes; Node's default maxmem (32 MiB) is exactly N=2^15, r=8.
  const maxmem = 256 * o.N * o.r + 1024 * 1024
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, { N: o.N, r: o.r, p: o.p, maxmem }, (err, key) => (err === null ? resolve(key) : reject(err)))
  })
}

/** Hashes a password with a fresh random salt. */
export async function hashPassword(password: string, o: { N: number; r: number; p: number } = SCRYPT_DEFAULTS): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const key = await derive(password, salt, KEY_BYTES, o)
  return `scrypt$${o.N}$${o.r}$${o.p}$${salt.toString('base64')}$${key.toString('base64')}`
}

/** Whether `password` matches the parsed hash (scrypt runs in the thread pool, not on the event loop). */
export async function verifyPassword(password: string, h: ScryptHash): Promise<boolean> {
  const key = await derive(password, h.salt, h.hash.length, h)
  return timingSafeEqual(key, h.hash)
}
