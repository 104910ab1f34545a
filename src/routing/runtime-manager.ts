import type { Logger } from 'pino'
import type { Config } from '../config/schema.js'
import type { ProxyMetrics } from '../metrics/proxy-metrics.js'
import type { HealthEvent, Pool } from '../upstreams/pool.js'
import { HealthChecker } from '../upstreams/health-checker.js'
import type { UpstreamDispatcher } from '../upstreams/dispatcher.js'
import { buildRuntime, type Runtime } from './runtime.js'

/**
 * Owns the live runtime: starts its health checks, and swaps it whole on reload. A request
 * reads `current` once, so in-flight requests finish on the runtime they started with.
 */
export class RuntimeManager {
  private rt: Runtime
  private checkers: HealthChecker[] = []

  constructor(config: Config, private readonly dispatcher: UpstreamDispatcher, private readonly metrics: ProxyMetrics, private readonly log: Logger) {
    this.rt = buildRuntime(config, dispatcher)
    this.activate(this.rt)
  }

  get current(): Runtime {
    return this.rt
  }

  /** Swaps in a runtime for `config`; connection pools of origins no longer listed drain and close. */
  async swap(config: Config): Promise<void> {
    const next = buildRuntime(config, this.dispatcher, this.rt)
    const old = this.rt
    const oldCheckers = this.checkers
    this.checkers = []
    this.activate(next)
    this.rt = next
    for (const c of oldCheckers) c.stop()
    for (const p of old.pools.values()) p.dispose()
    const keep = new Set<string>()
    for (const p of next.pools.values()) for (const m of p.members) keep.add(m.origin)
    await this.dispatcher.retain(keep)
  }

  close(): void {
    for (const c of this.checkers) c.stop()
    this.checkers = []
    for (const p of this.rt.pools.values()) p.dispose()
  }

  private activate(rt: Runtime): void {
    for (const pool of rt.pools.values()) {
      pool.onHealthEvent = (e) => this.onHealth(pool, e)
      pool.recompute()
      const hc = pool.config.health_check
      if (hc !== undefined) {
        const checker = new HealthChecker(pool, hc, this.dispatcher)
        this.checkers.push(checker)
        checker.start()
      }
    }
  }

  /** Each health transition is logged once, when it happens. */
  private onHealth(pool: Pool, e: HealthEvent): void {
    switch (e.kind) {
      case 'check':
        this.log[e.up ? 'info' : 'warn']({ pool: pool.name, member: e.member.name, check: e.detail }, e.up ? 'member is up (health check)' : 'member is down (health check)')
        break
      case 'ejected':
        this.metrics.ejections.labels(pool.name, e.member.name).inc()
        this.log.warn({ pool: pool.name, member: e.member.name, for_ms: e.forMs, consecutive_failures: e.failures }, 'member ejected (outlier detection)')
        break
      case 'returned':
        this.log.info({ pool: pool.name, member: e.member.name }, 'member returned from ejection')
        break
      case 'panic':
        this.log[e.on ? 'error' : 'info']({ pool: pool.name, healthy: e.healthy, total: e.total }, e.on ? 'pool in panic mode: too few healthy members, using all' : 'pool left panic mode')
        break
    }
  }
}
