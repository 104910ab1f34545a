/**
 * Byte ranges served from a complete stored response (RFC 9110 section 14). One range only:
 * several ranges would need multipart/byteranges, and a server may always ignore Range and
 * send the whole representation (section 14.2), which is what the caller does then.
 */
export type RangeAnswer =
  | { kind: 'whole' }
  | { kind: 'partial'; start: number; end: number }
  | { kind: 'unsatisfiable' }

const SPEC = /^bytes=(\d*)-(\d*)$/

/** What to answer for `header` on a stored body of `size` bytes. */
export function selectRange(header: string, size: number): RangeAnswer {
  const m = SPEC.exec(header.trim())
  if (m === null || (m[1] === '' && m[2] === '')) return { kind: 'whole' } // several ranges, or not bytes: ignore Range
  if (m[1] === '') {
    // suffix-length: the last N bytes (section 14.1.1).
    const n = Number(m[2])
    if (n === 0) return { kind: 'unsatisfiable' }
    return size === 0 ? { kind: 'unsatisfiable' } : { kind: 'partial', start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(m[1])
  const last = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  if (m[2] !== '' && Number(m[2]) < start) return { kind: 'whole' } // invalid range-spec: ignore
  if (start >= size) return { kind: 'unsatisfiable' }
  return { kind: 'partial', start, end: last }
}

/** If-Range (section 13.1.5): the range applies only when the validator still names our entry (strong ETag or exact date). */
export function ifRangeHolds(ifRange: string | undefined, etag: string | undefined, lastModified: string | undefined): boolean {
  if (ifRange === undefined) return true
  const v = ifRange.trim()
  if (v.startsWith('"')) return etag !== undefined && !etag.startsWith('W/') && etag === v
  if (v.startsWith('W/')) return false
  return lastModified !== undefined && lastModified === v
}
