/**
 * Answering a client's conditional GET/HEAD from a stored response (RFC 9110 section 13.1.1,
 * 13.1.3 and 13.2.2): If-None-Match uses the weak comparison; If-Modified-Since is only
 * evaluated when If-None-Match is absent.
 */
type Headers = Record<string, string | string[] | undefined>

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v
}

function opaque(tag: string): string {
  const t = tag.trim()
  return t.startsWith('W/') ? t.slice(2) : t
}

export function notModified(request: Headers, stored: Headers): boolean {
  const inm = one(request['if-none-match'])
  if (inm !== undefined) {
    const etag = one(stored.etag)
    if (etag === undefined) return false
    if (inm.trim() === '*') return true
    const want = opaque(etag)
    return inm.split(',').some((t) => opaque(t) === want)
  }
  const ims = one(request['if-modified-since'])
  const lm = one(stored['last-modified'])
  if (ims === undefined || lm === undefined) return false
  const since = Date.parse(ims)
  const modified = Date.parse(lm)
  return Number.isFinite(since) && Number.isFinite(modified) && modified <= since
}

/** Fields a 304 carries from the stored response (RFC 9110 section 15.4.5). */
const NOT_MODIFIED_FIELDS = ['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified', 'age']

export function notModifiedHeaders(stored: Headers): Headers {
  const out: Headers = {}
  for (const f of NOT_MODIFIED_FIELDS) if (stored[f] !== undefined) out[f] = stored[f]
  return out
}
