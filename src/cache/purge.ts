import { normalizeAuthority } from '../routing/route-table.js'
import { normalizePath } from '../routing/normalize-path.js'
import { cacheKey, hasPort } from './cache-key.js'
import { keyedQuery } from './keyed-query.js'
import type { RouteCacheConfig } from '../config/schema.js'
import type { CacheStore, PurgeOptions } from './store.js'

export interface PurgeResult {
  status: number
  body: Record<string, unknown>
}

/** Tags one purge request may name (a purge reads each tag's index; keep one request bounded). */
const MAX_TAGS = 1000

/**
 * An admin purge request, one of:
 *   {"url": "http://host[:port]/path?q"}            that URL (every variant, every pool partition)
 *   {"host": "h[:port]", "prefix": "/img/"}          every stored URL of the host under the prefix
 *   {"tags": ["product-1", ...]}                     every URL with a response tagged so
 *                                                    (Surrogate-Key / Cache-Tag, route tag_headers)
 * Each takes "soft": true to mark entries stale instead of dropping them (stale-while-revalidate
 * and stale-if-error still cover them; a validator makes the next fetch a 304). A host given
 * without a port reaches every port it was stored under; with a port, only that one. A prefix
 * must name a path, and "/" needs "all_paths": true, so no request wipes the store by accident.
 * `queryRules` are the caching routes' `query` rules: a URL is purged under the key each rule
 * gives it (a route keying on some parameters stores /a?x=1&utm=2 as /a?x=1).
 */
export async function purge(store: CacheStore, partitions: readonly string[], request: unknown, queryRules: readonly RouteCacheConfig['query'][] = ['all']): Promise<PurgeResult> {
  const body = (request ?? {}) as { url?: unknown; host?: unknown; prefix?: unknown; all_paths?: unknown; tags?: unknown; soft?: unknown }
  const bad = (error: string): PurgeResult => ({ status: 400, body: { error } })
  if (body.soft !== undefined && typeof body.soft !== 'boolean') return bad('soft: expected true or false')
  const opts: PurgeOptions = { soft: body.soft === true }
  const mode = opts.soft === true ? { soft: true } : {}
  try {
    if (typeof body.url === 'string') {
      let u: URL
      try { u = new URL(body.url) } catch { return bad('url: expected an absolute URL such as http://example.com/path') }
      const n = normalizePath(u.pathname)
      if (!n.ok) return bad(`url: ${n.reason}`)
      const host = normalizeAuthority(u.host)?.authority ?? u.host
      const authorities = hasPort(host) ? [host] : await store.authorities(host)
      const queries = new Set(queryRules.map((rule) => keyedQuery(u.search, rule).slice(1)))
      let removed = 0
      for (const authority of authorities) {
        for (const partition of partitions) {
          for (const query of queries) removed += await store.purgeUrl(cacheKey({ scheme: 'http', host: authority, path: n.path, query, partition }), opts)
        }
      }
      return { status: 200, body: { purged: removed, url: body.url, ...mode } }
    }
    if (typeof body.host === 'string' && typeof body.prefix === 'string') {
      if (!body.prefix.startsWith('/')) return bad('prefix: expected a path starting with /')
      if (body.prefix === '/' && body.all_paths !== true) return bad('prefix "/" purges the whole host: send "all_paths": true to confirm')
      const removed = await store.purgePrefix(normalizeAuthority(body.host)?.authority ?? body.host, body.prefix, opts)
      return { status: 200, body: { purged: removed, host: body.host, prefix: body.prefix, ...mode } }
    }
    if (body.tags !== undefined) {
      const tags = body.tags
      if (!Array.isArray(tags) || tags.length === 0 || tags.length > MAX_TAGS || !tags.every((x) => typeof x === 'string' && x !== '')) {
        return bad(`tags: expected a list of 1 to ${MAX_TAGS} non-empty strings`)
      }
      const removed = await store.purgeTags(tags as string[], opts)
      return { status: 200, body: { purged: removed, tags, ...mode } }
    }
    return bad('expected {"url": "..."}, {"host": "...", "prefix": "/..."} or {"tags": ["..."]}')
  } catch (err) {
    return { status: 503, body: { error: `purge failed; stale entries may remain: ${(err as Error).message}` } }
  }
}
