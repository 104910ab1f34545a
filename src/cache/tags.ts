/**
 * Purge tags of a response (Varnish xkey, Fastly surrogate keys, Cloudflare cache tags): read
 * from the route's tag_headers when the response is stored, so POST /admin/cache/purge
 * {"tags": [...]} finds every response carrying one. Tags are opaque and case-sensitive.
 */
type Headers = Record<string, string | string[] | undefined>

/** A response names at most this many tags, each at most this long; the rest are ignored. */
export const MAX_TAGS_PER_RESPONSE = 128
export const MAX_TAG_BYTES = 1024

/**
 * The tags `names` (lower-case field names) carry in `h`. Surrogate-Key is a space-separated
 * list (Fastly, Varnish xkey), Cache-Tag a comma-separated one (Cloudflare); any other field is
 * split on both. Repeated field lines add up.
 */
export function responseTags(h: Headers, names: readonly string[]): string[] {
  const tags = new Set<string>()
  for (const name of names) {
    const v = h[name]
    if (v === undefined) continue
    const split = name === 'surrogate-key' ? /\s+/ : name === 'cache-tag' ? /\s*,\s*/ : /[\s,]+/
    for (const line of Array.isArray(v) ? v : [v]) {
      for (const raw of line.trim().split(split)) {
        const tag = raw.trim()
        if (tag === '' || Buffer.byteLength(tag) > MAX_TAG_BYTES) continue
        if (tags.size >= MAX_TAGS_PER_RESPONSE) return [...tags]
        tags.add(tag)
      }
    }
  }
  return [...tags]
}
