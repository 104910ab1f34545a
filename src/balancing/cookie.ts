/** Value of one cookie in a Cookie header (RFC 6265 section 5.4 syntax), without allocating a map. */
export function readCookie(header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  const h = Array.isArray(header) ? header.join('; ') : header
  let at = 0
  while (at < h.length) {
    while (h.charCodeAt(at) === 32 || h.charCodeAt(at) === 59) at++
    const eq = h.indexOf('=', at)
    if (eq < 0) return undefined
    let end = h.indexOf(';', eq)
    if (end < 0) end = h.length
    if (eq - at === name.length && h.startsWith(name, at)) {
      let v = h.slice(eq + 1, end).trim()
      if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1)
      return v
    }
    at = end + 1
  }
  return undefined
}
