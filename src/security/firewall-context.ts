/**
 * What the firewall keeps for the life of the app, across reloads: its metrics, the rate
 * limiters (counts survive a reload of an unchanged rule), the throttled log of Redis errors and
 * the one Redis connection of shared rate limits, opened only when a rule asks for store: redis.
 */
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { Config } from '../config/schema.js'
import { createRedisClient, type RedisClient } from '../cache/redis-connection.js'
import { createFirewallMetrics } from './firewall-metrics.js'
import type { FirewallContext } from './firewall.js'
import { LimiterRegistry, ThrottledLog } from './rate-limit.js'

export interface FirewallResources {
  readonly context: FirewallContext
  /** Waits up to `ms` for the rate-limit Redis (true at once when there is none). */
  ready(ms: number): Promise<boolean>
  close(): Promise<void>
}

export function createFirewallResources(registry: Registry, log: Logger, logIntervalMs: () => number, env: NodeJS.ProcessEnv = process.env): FirewallResources {
  let client: RedisClient | undefined
  const context: FirewallContext = {
    metrics: createFirewallMetrics(registry),
    limiters: new LimiterRegistry(),
    storeErrors: new ThrottledLog(logIntervalMs, (fields, msg) => log.warn(fields, msg)),
    redis(config: Config): RedisClient {
      if (client !== undefined) return client
      const url = config.firewall.redis.url ?? config.cache.redis.url ?? env.REDIS_URL
      if (url === undefined || url === '') throw new Error('a rate limit has store: redis, but neither firewall.redis.url, cache.redis.url nor REDIS_URL is set')
      client = createRedisClient(url, { timeoutMs: config.firewall.redis.timeout_ms, maxReconnectDelayMs: 2000, connectionName: 'switchyard-ratelimit' })
      // Each failed check is counted and logged (throttled) where it happens: see firewall.ts.
      client.on('error', () => {})
      log.info({ url: url.replace(/\/\/[^@/]*@/, '//***@') }, 'rate limits shared through Redis')
      return client
    }
  }
  return {
    context,
    ready(ms) {
      const c = client
      if (c === undefined || c.status === 'ready') return Promise.resolve(true)
      return new Promise((resolve) => {
        const done = (ok: boolean): void => { clearTimeout(timer); c.off('ready', onReady); resolve(ok) }
        const onReady = (): void => done(true)
        const timer = setTimeout(() => done(false), ms)
        c.on('ready', onReady)
      })
    },
    async close() {
      const c = client
      if (c === undefined) return
      client = undefined
      if (c.status === 'ready') await c.quit().catch(() => undefined)
      c.disconnect(false)
    }
  }
}
