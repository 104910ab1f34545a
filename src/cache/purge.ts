import { normalizeAuthority } from '../routing/route-table.js'
import { normalizePath } from '../routing/normalize-path.js'
import { cacheKey } from './cache-key.js'
import { keyedQuery } from './keyed-query.js'
import type { RouteCacheConfig } from '../config/schema.js'
import type { CacheStore } from './store.js'

export interface PurgeResult {
  status: number
  body: Record<string, unknown>
}

/**
 * An admin purge request: {"url": "http://host/path?q"} drops that URL (every variant and
 * every pool partition); {"host": "h", "prefix": "/img/"} drops every stored URL of the host
 * under the prefix. A prefix must name a path, and "/" needs "all_paths": true, so no request
 * wipes the store by accident. `queryRules` are the caching routes' `query` rules: a URL is
 * purged under the key each rule gives it (a route keying on some parameters stores
 * /a?x=1&utm=2 as /a?x=1).
 */
export async function purge(store: CacheStore, partitions: readonly string[], request: unknown, queryRules: readonly RouteCacheConfig['query'][] = ['all']): Promise<PurgeResult> {
  const body = (request ?? {}) as { url?: unknown; host?: unknown; prefix?: unknown; all_paths?: unknown }
  const bad = (error: string): PurgeResult => ({ status: 400, body: { error } })
  try {
    if (typeof body.url === 'string') {
      let u: URL
      try { u = new URL(body.url) } catch { return bad('url: expected an absolute URL such as http://example.com/path') }
      const n = normalizePath(u.pathname)
      if (!n.ok) return bad(`url: ${n.reason}`)
      const host = normalizeAuthority(u.host)?.authority ?? u.host
      const queries = new Set(queryRules.map((rule) => keyedQuery(u.search, rule).slice(1)))
      let removed = 0
      for (const partition of partitions) {
        for (const query of queries) removed += await store.purgeUrl(cacheKey({ scheme: 'http', host, path: n.path, query, partition }))
      }
      return { status: 200, body: { purged: removed, url: body.url } }
    }
    if (typeof body.host === 'string' && typeof body.prefix === 'string') {
      if (!body.prefix.startsWith('/')) return bad('prefix: expected a path starting with /')
      if (body.prefix === '/' && body.all_paths !== true) return bad('prefix "/" purges the whole host: send "all_paths": true to confirm')
      const removed = await store.purgePrefix(normalizeAuthority(body.host)?.authority ?? body.host, body.prefix)
      return { status: 200, body: { purged: removed, host: body.host, prefix: body.prefix } }
    }
    return bad('expected {"url": "..."} or {"host": "...", "prefix": "/..."}')
  } catch (err) {
    return { status: 503, body: { error: `purge failed; stale entries may remain: ${(err as Error).message}` } }
  }
}
