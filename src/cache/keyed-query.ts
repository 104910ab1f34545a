import type { RouteCacheConfig } from '../config/schema.js'

/**
 * The query string a route keys its cache entries on: all of it, none, or only the listed
 * parameters in a canonical order (RFC 9111 section 2 lets a cache choose its key). Takes and
 * returns the query with its leading '?' ('' for none).
 */
export function keyedQuery(query: string, rule: RouteCacheConfig['query']): string {
  if (rule === 'all' || query === '') return rule === 'none' ? '' : query
  if (rule === 'none') return ''
  const params = new URLSearchParams(query.slice(1))
  const kept = new URLSearchParams()
  for (const name of [...rule].sort()) for (const v of params.getAll(name)) kept.append(name, v)
  const s = kept.toString()
  return s === '' ? '' : `?${s}`
}
