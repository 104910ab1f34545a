/**
 * Cache keys: digests of a response's URL and of the request header values its Vary names
 * select. Pure (no I/O), shared by every CacheStore.
 *
 * Why digests of JSON: a key must never be reachable from another URL. Concatenating
 * components ("a" + "bc" vs "ab" + "c") is ambiguous; JSON.stringify of an array of strings is
 * injective (every string is quoted and escaped), so distinct component lists give distinct
 * preimages, and SHA-256 makes a collision of digests computationally infeasible. The digest
 * is also fixed-length hex, so no request byte ever reaches a Redis key name.
 *
 * The key is method-independent on purpose: the HTTP layer only serves GET and HEAD from the
 * cache and both share one stored GET response (RFC 9110 section 9.3.2; RFC 9111 section 2
 * allows other key components when "the cache is aware" of them).
 */
import { createHash } from 'node:crypto'

/** The method-independent parts of a request's target URI (RFC 9111 section 2). */
export interface CacheUrl {
  /** 'http' or 'https' (case-insensitive). */
  readonly scheme: string
  /** The authority as routed, e.g. 'example.com' or 'example.com:8080' (case-insensitive). */
  readonly host: string
  /** The normalised path (src/routing/normalize-path.ts), starting with '/'. */
  readonly path: string
  /** The query as the route's cache config keeps it, without the leading '?'; '' for none. */
  readonly query: string
  /**
   * What else selects the representation besides the URL: the pool that served it (the
   * variants of an A/B split answer the same URL differently). Part of the digest, not of the
   * host index, so purging a URL or prefix reaches every partition.
   */
  readonly partition?: string
}

/** A prepared key: compute it once per request, pass it to get, set and purge. */
export interface CacheKey {
  readonly url: CacheUrl
  /** SHA-256 hex of the URL components; names the URL's variants index. */
  readonly digest: string
  /** The normalised host, the unit of prefix purges. */
  readonly host: string
  /** path + ('?' + query when there is one): what a prefix purge compares against. */
  readonly target: string
  /**
   * A content coding (br, gzip, zstd): the key names the compressed copy the HTTP layer keeps
   * of a stored response (http-cache.ts), a variant of the same URL beside it. Same URL digest,
   * so it lives in the URL's variants index and every purge of the URL (by URL, prefix or
   * tag) and every change of its Vary names drops it with the response it was made from.
   */
  readonly coding?: string
}

/** Request headers as Node gives them: lower-case names, repeated fields as arrays. */
export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>

/**
 * The Vary names of a stored response in canonical form: lower-case, de-duplicated, sorted
 * (order is not significant, RFC 9110 section 12.5.5), joined with ','. '' means "no Vary".
 * Field names are tokens and cannot contain ',', so the join is reversible.
 */
export type VaryNames = string

const DIGEST_VERSION = 'switchyard-cache/1'
const DIGEST_RE = /^[0-9a-f]{64}$/
// RFC 9110 section 5.6.2: token = 1*tchar.
const TOKEN_RE = /^[!#$%&'*+.^_`|~0-9a-z-]+$/

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

/** Whether `s` looks like one of our digests (stores check this before using one in a key). */
export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s)
}

/**
 * Host normalisation: case-insensitive (RFC 3986 section 3.2.2), a trailing dot dropped, and
 * the scheme's default port dropped (RFC 3986 section 6.2.3), so "Example.COM:80" and
 * "example.com" share entries over http.
 */
export function normalizeHost(host: string, scheme?: string): string {
  let h = host.toLowerCase()
  const s = scheme?.toLowerCase()
  if (s === 'http' && h.endsWith(':80')) h = h.slice(0, -3)
  else if (s === 'https' && h.endsWith(':443')) h = h.slice(0, -4)
  if (h.endsWith('.')) h = h.slice(0, -1)
  return h
}

export function cacheKey(url: CacheUrl): CacheKey {
  const scheme = url.scheme.toLowerCase()
  const host = normalizeHost(url.host, scheme)
  const normalized: CacheUrl = { scheme, host, path: url.path, query: url.query, partition: url.partition }
  const digest = sha256Hex(JSON.stringify([DIGEST_VERSION, 'url', scheme, host, url.path, url.query, url.partition ?? '']))
  const target = url.query === '' ? url.path : `${url.path}?${url.query}`
  return { url: normalized, digest, host, target }
}

/** Digest of a host: the name of its URL index, whatever bytes the Host header carried. */
export function hostDigest(host: string): string {
  return sha256Hex(JSON.stringify([DIGEST_VERSION, 'host', host]))
}

/** Digest of a host name without port: the name of its authorities index. */
export function hostnameDigest(hostname: string): string {
  return sha256Hex(JSON.stringify([DIGEST_VERSION, 'hostname', hostname]))
}

/** Digest of a tag (Surrogate-Key / Cache-Tag value): the name of its tag index. */
export function tagDigest(tag: string): string {
  return sha256Hex(JSON.stringify([DIGEST_VERSION, 'tag', tag]))
}

/** The host name of a normalised authority: "example.com:8080" -> "example.com", "[::1]:80" -> "[::1]". */
export function hostnameOf(authority: string): string {
  const m = /^(\[[^\]]*\]|[^:]*)(?::\d*)?$/.exec(authority)
  return m === null ? authority : m[1]
}

/** Whether an authority names a port ("example.com:8080", "[::1]:80"). */
export function hasPort(authority: string): boolean {
  return hostnameOf(authority) !== authority
}

/**
 * Parses a response's Vary header into canonical names, or undefined when the response must
 * not be stored for reuse: "*" always fails to match (RFC 9111 section 4.1), and a name that
 * is not a token is malformed.
 */
export function parseVary(vary: string | readonly string[] | undefined): VaryNames | undefined {
  if (vary === undefined) return ''
  const lines = typeof vary === 'string' ? [vary] : vary
  const names = new Set<string>()
  for (const line of lines) {
    for (const raw of line.split(',')) {
      const name = raw.trim().toLowerCase()
      if (name === '') continue
      if (name === '*' || !TOKEN_RE.test(name)) return undefined
      names.add(name)
    }
  }
  return [...names].sort().join(',')
}

/**
 * A selecting header's value, normalised only in ways RFC 9111 section 4.1 allows for every
 * field: leading/trailing whitespace removed and field lines combined with ", " (RFC 9110
 * section 5.3). Anything cleverer (reordering, case folding) is field-specific, so we do not:
 * a missed match costs one upstream fetch, a false match serves the wrong representation.
 * An absent field is null, distinct from an empty one.
 */
function selectedValue(headers: RequestHeaders, name: string): string | null {
  const v = headers[name]
  if (v === undefined) return null
  if (typeof v === 'string') return v.trim()
  return v.map((line) => line.trim()).join(', ')
}

/** The key of a stored response's compressed copy in `coding` (see CacheKey.coding). */
export function codedKey(key: CacheKey, coding: string): CacheKey {
  return { url: key.url, digest: key.digest, host: key.host, target: key.target, coding }
}

/**
 * Digest naming one stored variant of a URL: the URL, its Vary names and the selected values
 * (and the coding, for a compressed copy; absent, the digest is what it always was).
 */
export function variantDigest(key: CacheKey, names: VaryNames, headers: RequestHeaders): string {
  const list = names === '' ? NO_NAMES : namesOf(names)
  // A memory hit's lookup is mostly this SHA-256 (every response varies at least on Origin, see
  // http-cache.ts keyVary), while one URL sees few distinct selected values: remember them per
  // key object (HttpCache reuses key objects). Header values never contain NUL.
  let selected = names
  for (let i = 0; i < list.length; i++) {
    const v = selectedValue(headers, list[i])
    selected += v === null ? '\u0000-' : `\u0000=${v}`
  }
  // Selected values are client-chosen (Origin is, and may be 16 KiB): only short ones are
  // remembered, so the memo's size does not follow what clients send.
  const memoise = selected.length <= MEMO_MAX_CHARS
  let known: Map<string, string> | undefined
  if (memoise) {
    known = variantDigests.get(key)
    const hit = known?.get(selected)
    if (hit !== undefined) return hit
  }
  const values = list.map((n) => selectedValue(headers, n))
  const parts = key.coding === undefined ? [DIGEST_VERSION, 'variant', key.digest, names, values] : [DIGEST_VERSION, 'variant', key.digest, names, values, 'coding', key.coding]
  const digest = sha256Hex(JSON.stringify(parts))
  if (!memoise) return digest
  // A total budget as well: the key objects themselves are many (one per URL and query), so
  // the per-key bound alone would still multiply. Past the budget everything is dropped at once
  // (a fresh WeakMap: the old one's maps go with it), as the other memos here are cleared.
  const bytes = MEMO_ENTRY_OVERHEAD + 2 * (selected.length + digest.length)
  if (memoBytes + bytes > MEMO_MAX_BYTES) {
    variantDigests = new WeakMap()
    memoBytes = 0
    known = undefined
  }
  if (known === undefined) variantDigests.set(key, known = new Map())
  else if (known.size >= DIGESTS_PER_KEY) known.clear()
  known.set(selected, digest)
  memoBytes += bytes
  return digest
}

const NO_NAMES: readonly string[] = []
/** Variant digests by key object (gone with the key), then by Vary names and selected values. */
let variantDigests = new WeakMap<CacheKey, Map<string, string>>()
const DIGESTS_PER_KEY = 64
/** Longest Vary names + selected values text remembered (longer ones are digested every time). */
const MEMO_MAX_CHARS = 256
/** Budget of the variant digest memo, counted as UTF-16 bytes of its strings plus an entry overhead. */
const MEMO_MAX_BYTES = 4 * 1024 * 1024
const MEMO_ENTRY_OVERHEAD = 64
/** Bytes added to the variant digest memo since it was last emptied (an upper bound of what it holds). */
let memoBytes = 0

/** The variant digest memo's accounted size in bytes and its budget (for tests). */
export function variantDigestMemo(): { bytes: number, maxBytes: number, maxChars: number } {
  return { bytes: memoBytes, maxBytes: MEMO_MAX_BYTES, maxChars: MEMO_MAX_CHARS }
}

/** Vary names split, by their canonical list (bounded: cleared when full). */
const splitNames = new Map<string, readonly string[]>()
function namesOf(names: VaryNames): readonly string[] {
  let list = splitNames.get(names)
  if (list === undefined) {
    if (splitNames.size >= 1024) splitNames.clear()
    list = names.split(',')
    splitNames.set(names, list)
  }
  return list
}
