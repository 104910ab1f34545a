/**
 * The one path normalisation (documented in SECURITY.md and README): the path we route on, key
 * the cache on and send upstream is the same string.
 *  - percent-encoded unreserved characters (RFC 3986 section 2.3: A-Z a-z 0-9 - . _ ~) are
 *    decoded, exactly once; other escapes are kept with upper-case hex (%2e -> ., %252e stays);
 *  - an encoded slash or backslash (%2F, %5C), a literal backslash, NUL or any control
 *    character is rejected: an upstream that decodes them would see a different path;
 *  - duplicate slashes are merged; dot segments are removed (RFC 3986 section 5.2.4), and
 *    climbing above the root is rejected;
 *  - characters that are not allowed in a path are percent-encoded, so URL parsers downstream
 *    leave the result unchanged.
 */
export type NormalizedPath = { ok: true; path: string } | { ok: false; reason: string }

const HEX = '0123456789ABCDEF'

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  if (c >= 65 && c <= 70) return c - 55
  if (c >= 97 && c <= 102) return c - 87
  return -1
}

function isUnreserved(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95 || c === 126
}

/** pchar minus pct-encoded: unreserved, sub-delims, ':' and '@' (RFC 3986 section 3.3), plus '/'. */
function isPathChar(c: number): boolean {
  return isUnreserved(c) || c === 33 || c === 36 || (c >= 38 && c <= 44) || c === 59 || c === 61 || c === 58 || c === 64 || c === 47
}

/** A cheap check for the common case: only plain path characters, no '%', no dot segment, no '//'. */
function isAlreadyNormal(p: string): boolean {
  let prev = 0
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i)
    if (!isPathChar(c) || c === 37) return false
    if (c === 47 && prev === 47) return false
    if (c === 46 && prev === 47) return false
    prev = c
  }
  return true
}

export function normalizePath(raw: string): NormalizedPath {
  if (raw.length === 0 || raw.charCodeAt(0) !== 47) return { ok: false, reason: 'path must start with /' }
  if (isAlreadyNormal(raw)) return { ok: true, path: raw }
  let decoded = ''
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    if (c === 37) {
      const h = hexVal(raw.charCodeAt(i + 1))
      const l = hexVal(raw.charCodeAt(i + 2))
      if (h < 0 || l < 0) return { ok: false, reason: 'malformed percent-encoding' }
      const byte = h * 16 + l
      if (byte === 0x2f || byte === 0x5c) return { ok: false, reason: 'encoded slash or backslash in path' }
      if (byte < 0x20 || byte === 0x7f) return { ok: false, reason: 'control character in path' }
      decoded += isUnreserved(byte) ? String.fromCharCode(byte) : '%' + HEX[h] + HEX[l]
      i += 2
    } else if (c === 92) {
      return { ok: false, reason: 'backslash in path' }
    } else if (c < 0x20 || c === 0x7f) {
      return { ok: false, reason: 'control character in path' }
    } else if (isPathChar(c)) {
      decoded += raw[i]
    } else {
      // Non-ASCII or characters outside the path grammar: encode their UTF-8 bytes.
      const ch = String.fromCodePoint(raw.codePointAt(i) as number)
      if (ch.length === 2) i++
      for (const b of Buffer.from(ch, 'utf8')) decoded += '%' + HEX[b >> 4] + HEX[b & 15]
    }
  }
  // Dot segments and duplicate slashes.
  const segments = decoded.split('/')
  const out: string[] = []
  const last = segments.length - 1
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]
    if (s === '.' || (s === '' && i !== last)) continue
    if (s === '..') {
      if (out.length === 0) return { ok: false, reason: 'path climbs above the root' }
      out.pop()
      if (i === last) out.push('')
      continue
    }
    out.push(s)
  }
  const path = '/' + out.join('/')
  if (path.includes('%')) {
    try { decodeURIComponent(path) } catch { return { ok: false, reason: 'percent-encoding is not valid UTF-8' } }
  }
  return { ok: true, path }
}
