import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { CacheStoreStats } from './store.js'

/** Cache metrics on the app's registry; `stats` is read at scrape time from the store. */
export function createCacheMetrics(registry: Registry, stats: () => CacheStoreStats) {
  new Gauge({
    name: 'switchyard_cache_entries',
    help: 'Entries held by the cache store (where the store can tell).',
    registers: [registry],
    collect() { const s = stats(); if (s.entries !== undefined) this.set(s.entries) }
  })
  new Gauge({
    name: 'switchyard_cache_bytes',
    help: 'Bytes held by the cache store (where the store can tell).',
    registers: [registry],
    collect() { const s = stats(); if (s.bytes !== undefined) this.set(s.bytes) }
  })
  new Gauge({
    name: 'switchyard_cache_near_entries',
    help: 'Responses held by the near cache in front of Redis (cache.near_cache).',
    registers: [registry],
    collect() { const s = stats(); if (s.near !== undefined) this.set(s.near.entries) }
  })
  new Gauge({
    name: 'switchyard_cache_near_bytes',
    help: 'Bytes held by the near cache in front of Redis (cache.near_cache).',
    registers: [registry],
    collect() { const s = stats(); if (s.near !== undefined) this.set(s.near.bytes) }
  })
  return {
    near: new Counter({
      name: 'switchyard_cache_near_lookups_total',
      help: 'Redis store lookups that found a stored response, by where: hit (the near cache, no round trip) or miss (read from Redis and copied).',
      labelNames: ['result'] as const,
      registers: [registry]
    }),
    lookups: new Counter({
      name: 'switchyard_cache_lookups_total',
      help: 'Cache decisions by route and result (hit, miss, stale, revalidated, collapsed, bypass, error).',
      labelNames: ['route', 'result'] as const,
      registers: [registry]
    }),
    coalesce: new Counter({
      name: 'switchyard_cache_coalesce_total',
      help: 'Misses coordinated across instances through the Redis fill lock, by route and result: leader (took the lock and fetched), follower_hit (answered from the store after the leader), follower_miss (woken, nothing usable stored: fetched itself), follower_timeout (waited cache.coalesce.max_wait_ms: fetched itself), error (Redis unavailable: fetched without the lock).',
      labelNames: ['route', 'result'] as const,
      registers: [registry]
    }),
    storeErrors: new Counter({
      name: 'switchyard_cache_store_errors_total',
      help: 'Failed cache store operations by store and operation; requests are served from upstream instead.',
      labelNames: ['store', 'op'] as const,
      registers: [registry]
    }),
    storeLatency: new Histogram({
      name: 'switchyard_cache_store_duration_seconds',
      help: 'Latency of cache store operations (Redis round trips), by store and operation.',
      labelNames: ['store', 'op'] as const,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers: [registry]
    })
  }
}

export type CacheMetrics = ReturnType<typeof createCacheMetrics>
