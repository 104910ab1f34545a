/**
 * The one place that maps cache.store to a CacheStore class (DESIGN.md habit 4: a registry,
 * not an if-chain). 'auto' picks Redis when a URL is configured (cache.redis.url, else the
 * REDIS_URL environment variable), so one config file runs alone or as a fleet.
 */
import type { Logger } from 'pino'
import type { CacheConfig } from '../config/schema.js'
import { MemoryCacheStore } from './memory-store.js'
import { RedisCacheStore } from './redis-store.js'
import type { CacheStore, StoreHooks } from './store.js'

export interface CacheStoreDeps {
  logger: Logger
  hooks?: StoreHooks
  /** Where REDIS_URL is read for store 'auto' (default process.env). */
  env?: NodeJS.ProcessEnv
}

export type StoreName = Exclude<CacheConfig['store'], 'auto'>

const REGISTRY: Record<StoreName, (config: CacheConfig, deps: CacheStoreDeps) => CacheStore> = {
  memory: (config) => new MemoryCacheStore({ maxBytes: config.max_bytes }),
  redis: (config, deps) => {
    const url = redisUrl(config, deps)
    if (url === undefined) throw new Error('cache.store is "redis" but neither cache.redis.url nor REDIS_URL is set')
    return new RedisCacheStore({
      url,
      keyPrefix: config.key_prefix,
      timeoutMs: config.redis.timeout_ms,
      logger: deps.logger,
      hooks: deps.hooks,
      nearCache: config.near_cache.enabled ? { maxBytes: config.near_cache.max_bytes } : undefined
    })
  }
}

function redisUrl(config: CacheConfig, deps: CacheStoreDeps): string | undefined {
  const url = config.redis.url ?? (deps.env ?? process.env).REDIS_URL
  return url === '' ? undefined : url
}

/** The concrete store `config.store` names ('auto' resolved as above). */
export function resolveStoreName(config: CacheConfig, deps: CacheStoreDeps): StoreName {
  if (config.store !== 'auto') return config.store
  return redisUrl(config, deps) === undefined ? 'memory' : 'redis'
}

export function createCacheStore(config: CacheConfig, deps: CacheStoreDeps): CacheStore {
  const name = resolveStoreName(config, deps)
  const make = REGISTRY[name]
  if (make === undefined) throw new Error(`unknown cache store ${JSON.stringify(name)} (known: auto, ${Object.keys(REGISTRY).join(', ')})`)
  return make(config, deps)
}
