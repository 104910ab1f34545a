import type { Logger } from 'pino'
import type { Config } from '../config/schema.js'
import type { ProxyMetrics } from '../metrics/proxy-metrics.js'
import type { HealthEvent, Pool } from '../upstreams/pool.js'
import { HealthChecker } from '../upstreams/health-checker.js'
import type { UpstreamDispatcher } from '../upstreams/dispatcher.js'
import type { Clock } from '../clock.js'
import { buildRuntime, type Runtime, type RuntimeOptions } from './runtime.js'
import type { FirewallContext } from '../security/firewall.js'

/** A runtime built for a config but not live yet: commit() swaps it in, abort() drops it. */
export interface PreparedRuntime {
  readonly runtime: Runtime
  /** Swaps it in; returns the origins whose connection pool was rebuilt (changed options). */
  commit(): Promise<{ rebuilt: string[] }>
  abort(): Promise<void>
}

/**
 * Owns the live runtime: starts its health checks, and swaps it whole on reload. A request
 * reads `current` once, so in-flight requests finish on the runtime they started with.
 */
export class RuntimeManager {
  private rt: Runtime
  private checkers: HealthChecker[] = []
  private readonly initialChecks: Promise<void>
  private pending: PreparedRuntime | undefined
  private closed = false

  constructor(config: Config, private readonly dispatcher: UpstreamDispatcher, private readonly metrics: ProxyMetrics, private readonly log: Logger, private readonly clock?: Clock, private readonly firewall?: FirewallContext) {
    this.rt = buildRuntime(config, dispatcher, undefined, this.splitOptions(), firewall)
    dispatcher.commit()
    this.activate(this.rt)
    this.initialChecks = Promise.all(this.checkers.map((c) => c.firstRound)).then(() => undefined)
  }

  get current(): Runtime {
    return this.rt
  }

  /** Settles once every active health check of the first runtime has finished its first round. */
  firstChecks(): Promise<void> {
    return this.initialChecks
  }

  /**
   * Builds the runtime for `config` without making it live (two-phase reload: every worker
   * prepares, then all commit or all abort). One prepared runtime at a time.
   */
  prepare(config: Config): PreparedRuntime {
    if (this.pending !== undefined) throw new Error('a reload is already being applied')
    const runtime = buildRuntime(config, this.dispatcher, this.rt, this.splitOptions(), this.firewall)
    const done = (): void => { if (this.pending === prepared) this.pending = undefined }
    const prepared: PreparedRuntime = {
      runtime,
      commit: async () => {
        done()
        const rebuilt = this.dispatcher.commit()
        const old = this.rt
        const oldCheckers = this.checkers
        this.checkers = []
        this.activate(runtime)
        this.rt = runtime
        for (const c of oldCheckers) c.stop()
        for (const p of old.pools.values()) p.dispose()
        await this.dispatcher.retain(originsOf(runtime))
        return { rebuilt }
      },
      abort: async () => {
        done()
        for (const p of runtime.pools.values()) p.dispose()
        await this.dispatcher.abort()
      }
    }
    this.pending = prepared
    return prepared
  }

  /** Swaps in a runtime for `config`; connection pools of origins no longer listed drain and close. */
  async swap(config: Config): Promise<{ rebuilt: string[] }> {
    return this.prepare(config).commit()
  }

  /** Stops the health checks and disposes the pools' timers (the dispatcher is closed by its owner). */
  close(): void {
    this.closed = true
    for (const c of this.checkers) c.stop()
    this.checkers = []
    for (const p of this.rt.pools.values()) p.dispose()
  }

  /** Splits read time from the app's clock (realClock's is Date.now: ramp ISO times compare with it). */
  private splitOptions(): RuntimeOptions {
    const clock = this.clock
    return {
      now: clock === undefined ? Date.now : () => clock.now(),
      onSplitEvent: (e) => {
        if (e.action === 'rollback') this.log.warn({ ...e }, 'split variant rolled back by its guardrail')
        else this.log.info({ ...e }, `split ${e.action}`)
      }
    }
  }

  private activate(rt: Runtime): void {
    for (const pool of rt.pools.values()) {
      pool.onHealthEvent = (e) => this.onHealth(pool, e)
      pool.recompute()
      const hc = pool.config.health_check
      if (hc !== undefined && !this.closed) {
        const checker = new HealthChecker(pool, hc, this.dispatcher, { clock: this.clock })
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

function originsOf(rt: Runtime): Set<string> {
  const keep = new Set<string>()
  for (const p of rt.pools.values()) if (p.protocol === 'http') for (const m of p.members) keep.add(m.origin)
  return keep
}
