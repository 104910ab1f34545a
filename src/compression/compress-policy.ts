/**
 * A route's `compress` block compiled once (types matcher, the codings this Node can produce,
 * a memo of negotiations), the per-answer decision, and the header changes that go with it.
 * Pure: no streams, no sockets (the client writer runs the compressor, http-cache keeps copies).
 *
 * The decision follows RFC 9110 and what nginx's gzip filter and Caddy's encode handler do:
 * compress a 2xx answer with content (never 204 or 206, never 1xx or 304) when it carries no
 * Content-Encoding of its own, no `Cache-Control: no-transform` (RFC 9111 section 5.2.2.6), a
 * Content-Type from the route's list, and a Content-Length of at least min_bytes (unknown
 * length: compress). Such an answer depends on Accept-Encoding, so it says `Vary:
 * Accept-Encoding` also when this client gets it uncompressed (downstream caches must not hand
 * one client's coding to another, RFC 9110 section 12.5.5).
 */
import type { OutgoingHttpHeaders } from 'node:http'
import type { RouteCompressConfig } from '../config/schema.js'
import { availableCodings } from './encoder.js'
import { MediaTypes, negotiate, type Coding } from './negotiate.js'

/** What a route compressed so far; plain numbers, read by the metrics at scrape time. */
export interface CompressionCounters {
  /** Answers sent with a coding (streamed through a compressor or replayed from a stored copy). */
  readonly responses: Record<Coding, number>
  /** Bytes that went into a compressor, and bytes that came out. */
  bytesIn: number
  bytesOut: number
}

export function newCompressionCounters(): CompressionCounters {
  return { responses: { br: 0, zstd: 0, gzip: 0 }, bytesIn: 0, bytesOut: 0 }
}

/** Not compressed, and not dependent on Accept-Encoding either. */
export const PASS = 0
/** Not compressed for this client, but another would get it compressed: add Vary. */
export const VARY = 1
export type Verdict = typeof PASS | typeof VARY | Coding

// Negotiations remembered per route: browsers send a handful of distinct values.
const MEMO_ENTRIES = 256
const MEMO_KEY_CHARS = 256

export class CompressPolicy {
  /** The route's codings this Node can produce, in its order of preference. */
  readonly encodings: readonly Coding[]
  readonly types: MediaTypes
  /** Never below 1: an empty body is never compressed. */
  readonly minBytes: number
  readonly brotliQuality: number
  readonly gzipLevel: number
  readonly zstdLevel: number
  private readonly memo = new Map<string, Coding | ''>()

  constructor(cfg: RouteCompressConfig, readonly counters: CompressionCounters, available: ReadonlySet<Coding> = availableCodings()) {
    this.encodings = cfg.encodings.filter((c, i) => available.has(c) && cfg.encodings.indexOf(c) === i)
    this.types = new MediaTypes(cfg.types)
    this.minBytes = Math.max(1, cfg.min_bytes)
    this.brotliQuality = cfg.brotli_quality
    this.gzipLevel = cfg.gzip_level
    this.zstdLevel = cfg.zstd_level
  }

  /** The coding for a request's Accept-Encoding field, or undefined for identity. */
  negotiate(acceptEncoding: string | string[] | undefined): Coding | undefined {
    if (acceptEncoding === undefined) return undefined
    const value = typeof acceptEncoding === 'string' ? acceptEncoding : acceptEncoding.join(',')
    const known = this.memo.get(value)
    if (known !== undefined) return known === '' ? undefined : known
    const coding = negotiate(value, this.encodings)
    if (value.length <= MEMO_KEY_CHARS) {
      if (this.memo.size >= MEMO_ENTRIES) this.memo.clear()
      this.memo.set(value, coding ?? '')
    }
    return coding
  }

  /** What to do with an answer (client-facing fields, before the transformation) to a request with this Accept-Encoding. */
  decide(status: number, headers: OutgoingHttpHeaders, acceptEncoding: string | string[] | undefined): Verdict {
    if (status < 200 || status > 299 || status === 204 || status === 206) return PASS
    const ce = headers['content-encoding']
    if (ce !== undefined && !isIdentity(ce)) return PASS
    if (!this.types.has(text(headers['content-type']))) return PASS
    const cc = headers['cache-control']
    if (cc !== undefined && NO_TRANSFORM.test(text(cc) ?? '')) return PASS
    const length = contentLength(headers)
    if (length !== undefined && length < this.minBytes) return PASS
    return this.negotiate(acceptEncoding) ?? VARY
  }
}

/** The compiled policy of a route's `compress` block; undefined when off or when this Node can produce none of its codings. */
export function compileCompressPolicy(cfg: RouteCompressConfig | undefined, counters: CompressionCounters = newCompressionCounters()): CompressPolicy | undefined {
  if (cfg === undefined || !cfg.enabled) return undefined
  const p = new CompressPolicy(cfg, counters)
  return p.encodings.length > 0 ? p : undefined
}

const NO_TRANSFORM = /(?:^|,)\s*no-transform\s*(?:,|$)/i

function text(v: number | string | string[] | undefined): string | undefined {
  return v === undefined ? undefined : Array.isArray(v) ? v.join(', ') : String(v)
}

function isIdentity(v: number | string | string[]): boolean {
  return (text(v) ?? '').trim().toLowerCase() === 'identity'
}

/** The declared body length, if any. */
export function contentLength(headers: OutgoingHttpHeaders): number | undefined {
  const v = headers['content-length']
  if (v === undefined) return undefined
  const n = Number(Array.isArray(v) ? v[0] : v)
  return Number.isFinite(n) && n >= 0 ? n : undefined
}

/** Adds Accept-Encoding to Vary: merged, never twice, and never next to "*" (which already varies on everything). */
export function addVary(headers: OutgoingHttpHeaders): void {
  const v = text(headers.vary)
  if (v === undefined || v.trim() === '') {
    headers.vary = 'Accept-Encoding'
    return
  }
  for (const name of v.split(',')) {
    const n = name.trim().toLowerCase()
    if (n === '*' || n === 'accept-encoding') return
  }
  headers.vary = `${v}, Accept-Encoding`
}

/** A strong entity tag made weak: the encoded bytes differ, the representation does not (RFC 9110 section 8.8.3). */
export function weakEtag(etag: string): string {
  const t = etag.trim()
  return t.startsWith('"') ? `W/${t}` : t
}

/**
 * The fields of an answer sent with `coding` instead of as it was: Content-Encoding set, Vary
 * merged, a strong ETag weakened, and the fields that described the unencoded bytes dropped
 * (Content-Length: the encoded length is known only at the end; Accept-Ranges: ranges of the
 * encoded form are not served; digests of the other bytes).
 */
export function applyCoding(headers: OutgoingHttpHeaders, coding: Coding): void {
  addVary(headers)
  headers['content-encoding'] = coding
  delete headers['content-length']
  delete headers['accept-ranges']
  delete headers['content-md5']
  delete headers['content-digest']
  delete headers['repr-digest']
  const etag = text(headers.etag)
  if (etag !== undefined) headers.etag = weakEtag(etag)
}

/**
 * A 304 to a client whose cached copy is our encoded answer: it validated with the weak tag
 * we gave it (W/"x"), so the 304 names that tag, not the origin's strong "x", and says Vary
 * like the 200 did (RFC 9110 section 15.4.5). Other 304s are left alone.
 */
export function notModifiedForCoding(policy: CompressPolicy, headers: OutgoingHttpHeaders, ifNoneMatch: string | string[] | undefined, acceptEncoding: string | string[] | undefined): void {
  const etag = text(headers.etag)?.trim()
  const inm = text(ifNoneMatch)
  if (etag === undefined || inm === undefined || !etag.startsWith('"')) return
  const weak = `W/${etag}`
  if (!inm.split(',').some((t) => t.trim() === weak)) return
  if (policy.negotiate(acceptEncoding) === undefined) return
  headers.etag = weak
  addVary(headers)
}
