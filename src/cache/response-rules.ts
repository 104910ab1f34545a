/**
 * The RFC 9111 rules we own instead of http-cache-semantics, applied by rewriting what the
 * library sees and restoring what the client sees. Each was found wrong (or missing) in the
 * library with a real origin; the tests in test/cache/rfc9111.test.ts cite the sections.
 *
 * - Field lines: a field sent on several lines is one comma-joined list (RFC 9110 section 5.3);
 *   the library expects strings and threw on arrays.
 * - Cache-Control directive names are case-insensitive (RFC 9111 section 5.2); a directive
 *   repeated with different values, or a delta-seconds that is not 1*DIGIT, makes the freshness
 *   information invalid: the response is stale (section 4.2.1).
 * - must-revalidate (and proxy-revalidate, and s-maxage which implies it: sections 5.2.2.2,
 *   5.2.2.8, 5.2.2.10) apply once the response is stale; the library refused every reuse, even
 *   fresh ones. We hide them from it and enforce them ourselves (mustRevalidate()).
 * - Expires: only the three HTTP-date formats are dates (RFC 9110 section 5.6.7); anything else,
 *   or several values, means already expired (RFC 9111 section 5.3). The library used
 *   Date.parse, which reads nearly anything.
 * - Age: only delta-seconds, and of a list (one line `7200, 0` or several) the first member;
 *   anything else is ignored (RFC 9111 section 5.1).
 * - Date: a hit keeps the origin's Date; Age says how long it was held (RFC 9111 section 4).
 * - Final statuses other than the library's list may be stored with explicit freshness
 *   (RFC 9111 section 3); heuristic freshness stays limited to the statuses of RFC 9110 15.1.
 * - share_set_cookie: the library never shares a response with Set-Cookie unless public.
 *
 * What the library sees is a copy; the original fields ride along under names no real field
 * can have (they contain a space) and are restored by forClient() before anything is written.
 */
type Headers = Record<string, string | string[] | undefined>

const SIDE = ' sy:'
const SIDE_STATUS = ' sy:status'
const HIDDEN_REVALIDATE = 'x-switchyard-must-revalidate'
/** The statuses http-cache-semantics stores; for others we present 200 with explicit freshness. */
const LIBRARY_STATUSES = new Set([200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501])
const DELTA = /^\d+$/

export interface LibraryView {
  /** The fields as the library must see them. */
  readonly headers: Headers
  /** The status the library is given (200 stands in for a final status it does not know). */
  readonly status: number
}

export interface RuleOptions {
  /** share_set_cookie: a response with Set-Cookie may be stored and shared. */
  readonly shareSetCookie: boolean
  /** Targeted cache-control field names (RFC 9213), lower-case, in priority order. */
  readonly targeted: readonly string[]
}

/** One comma-joined value per field, Set-Cookie excepted (RFC 9110 section 5.3). */
export function joinFieldLines(h: Headers): Headers {
  let out: Headers | undefined
  for (const k in h) {
    const v = h[k]
    if (Array.isArray(v) && k !== 'set-cookie') {
      out ??= { ...h }
      out[k] = v.join(', ')
    }
  }
  return out ?? h
}

interface Directive { name: string; value: string | undefined }

/** Cache-Control directives (RFC 9111 section 5.2): names lower-cased, quoted values unquoted. */
export function parseDirectives(value: string): Directive[] {
  const out: Directive[] = []
  let i = 0
  const n = value.length
  while (i < n) {
    while (i < n && (value[i] === ',' || value[i] === ' ' || value[i] === '\t')) i++
    let j = i
    while (j < n && value[j] !== '=' && value[j] !== ',') j++
    const name = value.slice(i, j).trim().toLowerCase()
    let v: string | undefined
    if (j < n && value[j] === '=') {
      j++
      while (j < n && (value[j] === ' ' || value[j] === '\t')) j++
      if (value[j] === '"') {
        let s = ''
        j++
        while (j < n && value[j] !== '"') {
          if (value[j] === '\\' && j + 1 < n) j++
          s += value[j++]
        }
        j++
        v = s
        while (j < n && value[j] !== ',') j++
      } else {
        const start = j
        while (j < n && value[j] !== ',') j++
        v = value.slice(start, j).trim()
      }
    }
    if (name !== '') out.push({ name, value: v })
    i = j + 1
  }
  return out
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/i

function formatDirectives(ds: readonly Directive[]): string {
  return ds.map((d) => d.value === undefined ? d.name : `${d.name}=${TOKEN.test(d.value) ? d.value : JSON.stringify(d.value)}`).join(', ')
}

const FRESHNESS = new Set(['max-age', 's-maxage', 'stale-while-revalidate', 'stale-if-error'])

/**
 * A Cache-Control value as the library must read it: canonical names, invalid freshness turned
 * into max-age=0, and the revalidation directives hidden (see mustRevalidate()).
 */
export function canonicalCacheControl(value: string, forResponse: boolean): string {
  const ds = parseDirectives(value)
  const seen = new Map<string, string | undefined>()
  let invalid = false
  const out: Directive[] = []
  for (const d of ds) {
    if (FRESHNESS.has(d.name)) {
      if (d.value === undefined || !DELTA.test(d.value)) { if (d.name === 'max-age' || d.name === 's-maxage') invalid = true; continue }
      if (seen.has(d.name)) {
        if (seen.get(d.name) !== d.value && (d.name === 'max-age' || d.name === 's-maxage')) invalid = true
        continue
      }
      seen.set(d.name, d.value)
    }
    if (forResponse && (d.name === 'must-revalidate' || d.name === 'proxy-revalidate')) {
      out.push({ name: HIDDEN_REVALIDATE, value: undefined })
      continue
    }
    out.push(d)
  }
  if (invalid) {
    // RFC 9111 section 4.2.1: invalid freshness information: consider the response stale.
    const kept = out.filter((d) => d.name !== 'max-age' && d.name !== 's-maxage')
    kept.push({ name: 'max-age', value: '0' })
    return formatDirectives(kept)
  }
  return formatDirectives(out)
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']
// Case-insensitive: "a cache recipient SHOULD match the field value case-insensitively" (RFC 9111 section 4.2).
const IMF = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/i
const RFC850 = /^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d{2})-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/i
const ASCTIME = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ( \d|\d{2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/i

/**
 * An HTTP-date in one of the three formats of RFC 9110 section 5.6.7, matched case-insensitively
 * (RFC 9111 section 4.2), as ms since the epoch; NaN otherwise. The day name must be one, but
 * is not checked against the date (redundant, and nginx, httpd and Traffic Server ignore it).
 */
export function parseHttpDate(s: string, now = Date.now()): number {
  let dd: number, mon: string, year: number, hh: number, mm: number, ss: number
  let m = IMF.exec(s)
  if (m !== null) {
    [dd, mon, year, hh, mm, ss] = [+m[1], m[2], +m[3], +m[4], +m[5], +m[6]]
  } else if ((m = RFC850.exec(s)) !== null) {
    dd = +m[1]; mon = m[2]; hh = +m[4]; mm = +m[5]; ss = +m[6]
    // RFC 9110 section 5.6.7: a two-digit year more than 50 years in the future is in the past century.
    const thisYear = new Date(now).getUTCFullYear()
    year = Math.floor(thisYear / 100) * 100 + +m[3]
    if (year > thisYear + 50) year -= 100
  } else if ((m = ASCTIME.exec(s)) !== null) {
    [mon, dd, hh, mm, ss, year] = [m[1], +m[2].trim(), +m[3], +m[4], +m[5], +m[6]]
  } else {
    return NaN
  }
  if (hh > 23 || mm > 59 || ss > 60) return NaN
  const t = Date.UTC(year, MONTHS.indexOf(mon.toLowerCase()), dd, hh, mm, Math.min(ss, 59))
  // No 31 Feb.
  if (new Date(t).getUTCDate() !== dd) return NaN
  return t
}

function explicitFreshness(h: Headers): boolean {
  const cc = h['cache-control']
  if (typeof cc === 'string' && /(^|,)\s*(max-age|s-maxage)\s*=/.test(cc)) return true
  return h.expires !== undefined
}

/**
 * A response as http-cache-semantics must see it. `h` is the response as received (or a 304's
 * fields); the result keeps the originals for forClient().
 */
export function forLibrary(status: number, received: Headers, opts: RuleOptions, now = Date.now()): LibraryView {
  const h: Headers = { ...joinFieldLines(received) }
  const cc = h['cache-control']
  if (typeof cc === 'string') h[`${SIDE}cache-control`] = cc
  const expires = received.expires
  if (expires !== undefined) h[`${SIDE}expires`] = expires
  const targeted = targetedDirectives(h, opts.targeted)
  if (targeted !== undefined) {
    // RFC 9213 section 2.1: the first valid targeted field decides; Cache-Control and Expires are ignored.
    h['cache-control'] = canonicalCacheControl(targeted, true)
    delete h.expires
    delete h.pragma
    if (cc === undefined) h[`${SIDE}cache-control`] = null as unknown as string
  } else {
    if (typeof cc === 'string') h['cache-control'] = canonicalCacheControl(cc, true)
    if (expires !== undefined) {
      const t = Array.isArray(expires) ? NaN : parseHttpDate(expires, now)
      // The library reads Expires with Date.parse: hand it the date we read, as an IMF-fixdate.
      h.expires = Number.isNaN(t) ? '0' : new Date(t).toUTCString()
    }
  }
  const age = h.age
  let ageS = 0
  if (age !== undefined) {
    // A list (one line `7200, 0`, or several lines joined): its first member counts (RFC 9111 section 5.1).
    const first = typeof age === 'string' ? age.split(',')[0].trim() : undefined
    if (first === undefined || !DELTA.test(first)) delete h.age
    else { ageS = Number(first); h.age = first }
  }
  const date = received.date
  if (typeof date === 'string') {
    h[`${SIDE}date`] = date
    const t = parseHttpDate(date)
    if (Number.isNaN(t)) delete h.date
    else {
      // RFC 9111 section 4.2.3: the initial age is the larger of Age and the apparent age
      // (response time minus Date); the library reads only Age.
      const apparent = Math.floor((now - t) / 1000)
      if (apparent > ageS) h.age = String(apparent)
    }
  }
  const lm = received['last-modified']
  if (typeof lm === 'string' && Number.isNaN(parseHttpDate(lm))) {
    // Not a date: no heuristic freshness from it (it still goes back to the client as sent).
    h[`${SIDE}last-modified`] = lm
    delete h['last-modified']
  }
  if (opts.shareSetCookie && h['set-cookie'] !== undefined) {
    h[`${SIDE}set-cookie`] = h['set-cookie']
    delete h['set-cookie']
  }
  let libStatus = status
  if (status >= 200 && status !== 206 && status !== 304 && !LIBRARY_STATUSES.has(status) && explicitFreshness(h)) {
    h[SIDE_STATUS] = String(status)
    libStatus = 200
  }
  return { headers: h, status: libStatus }
}

/**
 * The first targeted field (RFC 9213) with a valid, non-empty Structured Fields dictionary,
 * as Cache-Control directives; undefined when none applies.
 */
export function targetedDirectives(h: Headers, names: readonly string[]): string | undefined {
  for (const name of names) {
    const v = h[name]
    if (typeof v !== 'string') continue
    const ds = parseSfDictionary(v)
    if (ds !== undefined && ds.length > 0) return formatDirectives(ds)
  }
  return undefined
}

const INTEGER_DIRECTIVES = new Set(['max-age', 's-maxage', 'stale-while-revalidate', 'stale-if-error'])
const SF_KEY = /^[a-z*][a-z0-9_\-.*]*$/
const SF_TOKEN = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*$/

/**
 * A Structured Fields dictionary (RFC 8941 section 3.2) reduced to directives: integers and
 * tokens as values, strings unquoted, true booleans as bare names, false ones dropped,
 * parameters ignored. Undefined when the value is not a valid dictionary (RFC 9213: ignore it).
 */
export function parseSfDictionary(value: string): Directive[] | undefined {
  const seen = new Map<string, Directive | undefined>()
  const members = splitOutsideQuotes(value.trim(), ',')
  if (members === undefined) return undefined
  for (const raw of members) {
    const member = raw.trim()
    if (member === '') return undefined
    const [item] = splitOutsideQuotes(member, ';') ?? []
    if (item === undefined) return undefined
    const eq = item.indexOf('=')
    const key = (eq < 0 ? item : item.slice(0, eq)).trim()
    if (!SF_KEY.test(key)) return undefined
    let d: Directive | undefined
    // A bare key is the boolean true: no value for a directive that takes an integer (RFC 9213 section 2.1).
    if (eq < 0) d = INTEGER_DIRECTIVES.has(key) ? undefined : { name: key, value: undefined }
    else {
      const v = item.slice(eq + 1).trim()
      if (/^-?\d{1,15}$/.test(v)) d = { name: key, value: v }
      else if (/^-?\d{1,12}\.\d{1,3}$/.test(v)) d = { name: key, value: v }
      else if (v === '?1') d = { name: key, value: undefined }
      else if (v === '?0') d = undefined
      else if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) d = { name: key, value: v.slice(1, -1).replace(/\\(["\\])/g, '$1') }
      else if (SF_TOKEN.test(v)) d = { name: key, value: v }
      else return undefined
      // RFC 9213 section 2.1: the freshness directives take integers; another type (a string
      // "10000", a decimal, a token) makes that directive invalid, and it is ignored.
      if (d !== undefined && INTEGER_DIRECTIVES.has(key) && !/^-?\d{1,15}$/.test(v)) d = undefined
    }
    // A repeated key: the last one wins (RFC 8941 section 4.2.2).
    seen.delete(key)
    seen.set(key, d)
  }
  return [...seen.values()].filter((d): d is Directive => d !== undefined)
}

function splitOutsideQuotes(s: string, sep: string): string[] | undefined {
  const parts: string[] = []
  let cur = ''
  let quoted = false
  for (let i = 0; i < s.length; i++) {
    const c = s[i]
    if (quoted && c === '\\') { cur += c + (s[i + 1] ?? ''); i++; continue }
    if (c === '"') quoted = !quoted
    if (c === sep && !quoted) { parts.push(cur); cur = ''; continue }
    cur += c
  }
  if (quoted) return undefined
  parts.push(cur)
  return parts
}

/** The request fields as the library must see them: joined lines, canonical Cache-Control. */
export function requestForLibrary(received: Headers): Headers {
  const h = joinFieldLines(received)
  const cc = h['cache-control']
  return typeof cc === 'string' ? { ...h, 'cache-control': canonicalCacheControl(cc, false) } : h
}

/** The stored fields as the client must see them: the origin's own values back in place. */
export function forClient(h: Headers): Headers {
  const out: Headers = {}
  for (const k in h) if (!k.startsWith(SIDE)) out[k] = h[k]
  for (const k in h) {
    if (!k.startsWith(SIDE) || k === SIDE_STATUS) continue
    const v = h[k] as string | string[] | null | undefined
    // null: the origin sent no such field (we added one for the library only).
    if (v === null || v === undefined) delete out[k.slice(SIDE.length)]
    else out[k.slice(SIDE.length)] = v
  }
  return out
}

/** The origin sent a Date: forClient() gives the client that one, whatever Date the library set. */
export function keepsOriginDate(h: Headers): boolean {
  return `${SIDE}date` in h
}

/** The status to replay: the origin's, where the library was given 200 in its place. */
export function storedStatus(libraryStatus: number, h: Headers): number {
  const s = h[SIDE_STATUS]
  return typeof s === 'string' ? Number(s) : libraryStatus
}

/** The stored response may not be served stale, even with stale-while-revalidate, stale-if-error or max-stale. */
export function mustRevalidate(h: Headers): boolean {
  const cc = h['cache-control']
  return typeof cc === 'string' && (cc.includes(HIDDEN_REVALIDATE) || /(^|,)\s*s-maxage=/.test(cc))
}
