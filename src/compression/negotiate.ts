/**
 * Content negotiation for response compression, pure: which content coding a client accepts
 * (RFC 9110 section 12.5.3, Accept-Encoding) and which media types are worth compressing.
 */

/** The content codings the proxy can produce, by their registered names (RFC 9110 section 8.4.1). */
export type Coding = 'br' | 'zstd' | 'gzip'

// RFC 9110 section 5.6.2: token = 1*tchar.
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/
// RFC 9110 section 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/

/**
 * An Accept-Encoding value as weights in thousandths (0-1000) by lower-cased coding, '*' and
 * 'identity' included. Malformed members (not a token, a parameter other than q, a bad qvalue)
 * are ignored, as the RFC lets a recipient do with what it cannot parse; a coding listed twice
 * keeps its first weight. "x-gzip" is read as "gzip" (section 8.4.1.3).
 */
export function parseAcceptEncoding(value: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const member of value.split(',')) {
    const parts = member.split(';')
    let coding = parts[0].trim().toLowerCase()
    if (coding === '' || !TOKEN.test(coding)) continue
    if (coding === 'x-gzip') coding = 'gzip'
    let weight = 1000
    let ok = true
    for (let i = 1; i < parts.length; i++) {
      const p = parts[i].trim()
      const eq = p.indexOf('=')
      if (eq < 0 || p.slice(0, eq).trim().toLowerCase() !== 'q') { ok = false; break }
      const q = p.slice(eq + 1).trim()
      if (!QVALUE.test(q)) { ok = false; break }
      weight = Math.round(Number(q) * 1000)
    }
    if (ok && !out.has(coding)) out.set(coding, weight)
  }
  return out
}

/**
 * The coding to send for an Accept-Encoding value, from `offered` (in the proxy's order of
 * preference), or undefined for no coding (identity). The highest weight above zero wins and
 * ties go to the earlier offered coding; '*' weighs every coding the value does not name. An
 * absent field means identity here: the RFC allows any coding then, but a client that sent none
 * may not decode any (curl, scripts), and every common server reads it this way too. Identity
 * named with a higher weight than every offered coding is honoured; identity refused
 * ("identity;q=0") with no acceptable coding gets identity anyway (section 12.5.3: a server
 * SHOULD then send without coding rather than fail).
 */
export function negotiate(value: string | undefined, offered: readonly Coding[]): Coding | undefined {
  if (value === undefined) return undefined
  const weights = parseAcceptEncoding(value)
  if (weights.size === 0) return undefined
  const any = weights.get('*')
  let best: Coding | undefined
  let bestWeight = 0
  for (const c of offered) {
    const w = weights.get(c) ?? any ?? 0
    if (w > bestWeight) {
      best = c
      bestWeight = w
    }
  }
  if (best === undefined) return undefined
  const identity = weights.get('identity')
  return identity !== undefined && identity > bestWeight ? undefined : best
}

/**
 * A compiled list of media types: exact `type/subtype`, `type/*`, and structured-syntax
 * suffixes as `type/*+suffix` (application/*+json matches application/problem+json).
 * Parameters (charset) and case do not matter. text/event-stream is left out of `text/*`: a
 * compressor holds back output until it has enough to compress, which would delay events
 * (and keep compressor state for the life of a long stream); list it by name to compress it
 * anyway (the client writer flushes after each read of a body of unknown length).
 */
export class MediaTypes {
  private readonly exact = new Set<string>()
  private readonly types = new Set<string>()
  private readonly suffixes = new Set<string>()

  constructor(list: readonly string[]) {
    for (const raw of list) {
      const t = raw.trim().toLowerCase()
      const slash = t.indexOf('/')
      const sub = t.slice(slash + 1)
      if (sub === '*') this.types.add(t.slice(0, slash))
      else if (sub.startsWith('*+')) this.suffixes.add(`${t.slice(0, slash)}/${sub.slice(1)}`)
      else this.exact.add(t)
    }
  }

  /** Whether a Content-Type value names one of the types. */
  has(contentType: string | undefined): boolean {
    if (contentType === undefined) return false
    const semi = contentType.indexOf(';')
    const mt = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
    if (this.exact.has(mt)) return true
    const slash = mt.indexOf('/')
    if (slash <= 0 || mt === 'text/event-stream') return false
    if (this.types.has(mt.slice(0, slash))) return true
    const plus = mt.lastIndexOf('+')
    return plus > slash && this.suffixes.has(`${mt.slice(0, slash)}/${mt.slice(plus)}`)
  }
}

/** Pure `compressible(contentType, types)`: whether a Content-Type matches a list of media types. */
export function compressible(contentType: string | undefined, types: readonly string[] | MediaTypes): boolean {
  return (types instanceof MediaTypes ? types : new MediaTypes(types)).has(contentType)
}
