/**
 * The variant digest memo (cache-key.ts variantDigest) stays bounded whatever clients send:
 * Origin is client-chosen and every stored response varies on it, so long values must not be
 * remembered, and many keys with short values must not grow the memo past its budget. Digests
 * stay correct (equal to a fresh computation) and distinct for distinct values either way.
 */
import t from 'tap'
import { createHash } from 'node:crypto'
import { cacheKey, variantDigest, variantDigestMemo, type CacheKey } from '../../src/cache/cache-key.js'

/** The digest as the documented preimage gives it, computed without any memo. */
function expected(key: CacheKey, names: string, values: (string | null)[]): string {
  return createHash('sha256').update(JSON.stringify(['switchyard-cache/1', 'variant', key.digest, names, values])).digest('hex')
}

const keyFor = (i: number): CacheKey => cacheKey({ scheme: 'http', host: 'example.com', path: '/x', query: String(i) })

t.test('long selected values are not remembered; their digests are right and distinct', async (t) => {
  const before = variantDigestMemo().bytes
  const seen = new Set<string>()
  // 256 keys x 63 Origin values of 8 KB: the measured case that retained 127 MiB.
  for (let k = 0; k < 256; k++) {
    const key = keyFor(k)
    for (let o = 0; o < 63; o++) {
      const origin = `https://${String(o).padStart(2, '0')}${'a'.repeat(8 * 1024)}.example`
      const d = variantDigest(key, 'accept-encoding,origin', { origin, 'accept-encoding': 'gzip' })
      if (k < 2) t.equal(d, expected(key, 'accept-encoding,origin', ['gzip', origin]))
      seen.add(d)
    }
  }
  t.equal(seen.size, 256 * 63, 'one digest per key and value')
  const after = variantDigestMemo()
  t.equal(after.bytes, before, 'nothing of the long values was remembered')
  t.ok(after.bytes <= after.maxBytes)
})

t.test('short values are remembered within the byte budget; digests stay right', async (t) => {
  const { maxBytes, maxChars } = variantDigestMemo()
  // Enough distinct short values over enough keys to pass the budget several times.
  const value = (o: number): string => `https://o${o}.${'b'.repeat(maxChars - 60)}.example`
  let peak = 0
  const digests = new Set<string>()
  for (let k = 0; k < 2048; k++) {
    const key = keyFor(100000 + k)
    for (let o = 0; o < 64; o++) {
      digests.add(variantDigest(key, 'origin', { origin: value(o) }))
      peak = Math.max(peak, variantDigestMemo().bytes)
    }
    // A remembered digest is the one a fresh computation gives.
    if (k % 256 === 0) t.equal(variantDigest(key, 'origin', { origin: value(7) }), expected(key, 'origin', [value(7)]))
    if (k === 0) t.equal(variantDigest(key, 'origin', {}), expected(key, 'origin', [null]), 'absent differs from any value')
  }
  t.equal(digests.size, 2048 * 64)
  t.ok(peak <= maxBytes, `memo peaked at ${peak} bytes, budget ${maxBytes}`)
  t.ok(peak > maxBytes / 2, 'the memo is used (fast path kept for short values)')
})

t.test('a remembered digest is served for the same key and value; no memo crosses keys or codings', async (t) => {
  const key = keyFor(7)
  const a = variantDigest(key, 'origin', { origin: 'https://a.example' })
  t.equal(variantDigest(key, 'origin', { origin: 'https://a.example' }), a)
  t.not(variantDigest(key, 'origin', { origin: 'https://b.example' }), a)
  t.not(variantDigest(keyFor(8), 'origin', { origin: 'https://a.example' }), a)
  t.not(variantDigest({ ...key, coding: 'br' }, 'origin', { origin: 'https://a.example' }), a)
})
