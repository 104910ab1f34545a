import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { ConfigError, loadConfigFile } from '../config/load.js'
import type { Config } from '../config/schema.js'
import type { Supervisor } from '../sidecars/supervisor.js'
import type { ReloadAnswer } from './control.js'
import { carryRestartSettings, planReload, summarize } from './reload-plan.js'
import { createInstanceMetrics } from '../metrics/instance-metrics.js'

/** A config built on the data plane(s) but not switched to yet. */
export interface PreparedReload {
  /** Switches; returns the origins whose connection pool was rebuilt, and how many workers switched. */
  commit(): Promise<{ rebuilt: string[]; workers?: number }>
  abort(): Promise<void>
}

/** Where a reload is applied: the app in this process, or every worker of a cluster. */
export interface ReloadTarget {
  /** Builds everything `config` needs without switching; throws when that cannot be done. */
  prepare(config: Config): Promise<PreparedReload>
}

export interface ReloaderOptions {
  /** The file reload() reads when it is given no config. */
  configPath: string | undefined
  running: Config
  target: ReloadTarget
  supervisor: Supervisor | undefined
  log: Logger
  /** Wall-clock milliseconds for the last-success timestamp (default Date.now). */
  wallClock?: () => number
}

/**
 * What the reload metrics report (src/metrics/instance-metrics.ts), named after Prometheus's
 * own prometheus_config_* series: the boot config counts as the first successful load, so the
 * timestamp is the start time until a reload succeeds, and `lastSuccessful` starts true.
 */
export interface ReloadStats {
  /** Reloads applied everywhere. */
  readonly successes: number
  /** Reloads answered `ok: false`: rejected file, prepare failed, or a switch that failed somewhere. */
  readonly failures: number
  /** Wall-clock milliseconds of the last successful load (boot or reload). */
  readonly lastSuccessMs: number
  /** Whether the last reload attempt succeeded (true before any). */
  readonly lastSuccessful: boolean
}

/**
 * The one reload procedure (single process and cluster primary alike): validate the file once,
 * plan the changes, prepare everywhere, then switch everywhere (or nowhere), update sidecars,
 * and log and answer every change with its class. Reloads run one at a time, in order.
 */
export class Reloader {
  private current: Config
  private queue: Promise<unknown> = Promise.resolve()
  private readonly counts: { successes: number; failures: number; lastSuccessMs: number; lastSuccessful: boolean }
  private readonly wallClock: () => number

  constructor(private readonly opts: ReloaderOptions) {
    this.current = opts.running
    this.wallClock = opts.wallClock ?? Date.now
    this.counts = { successes: 0, failures: 0, lastSuccessMs: this.wallClock(), lastSuccessful: true }
  }

  /** Reload outcomes so far, for the metrics (read at scrape time). */
  get stats(): ReloadStats {
    return { ...this.counts }
  }

  /**
   * Registers switchyard_build_info and the reload metrics read from this Reloader on the
   * registry the admin /metrics serves: call it where that registry and the Reloader that runs
   * reloads meet (app.ts; the cluster primary's ClusterControl).
   */
  registerMetrics(registry: Registry): void {
    createInstanceMetrics(registry, this)
  }

  /** The config in effect (restart-class settings keep the values the process started with). */
  get running(): Config {
    return this.current
  }

  reload(config?: Config): Promise<ReloadAnswer> {
    const run = this.queue.then(() => this.run(config)).then((answer) => this.count(answer), (err: unknown) => {
      this.count({ ok: false })
      throw err
    })
    this.queue = run.catch(() => undefined)
    return run
  }

  private count<A extends { ok: boolean }>(answer: A): A {
    if (answer.ok) {
      this.counts.successes++
      this.counts.lastSuccessMs = this.wallClock()
    } else {
      this.counts.failures++
    }
    this.counts.lastSuccessful = answer.ok
    return answer
  }

  private async run(given: Config | undefined): Promise<ReloadAnswer> {
    const { log } = this.opts
    let next: Config
    if (given !== undefined) {
      next = given
    } else if (this.opts.configPath === undefined) {
      return { ok: false, error: 'no config file to reload from' }
    } else {
      try {
        next = loadConfigFile(this.opts.configPath)
      } catch (err) {
        const error = err instanceof ConfigError ? err.message : String(err)
        log.error({ file: this.opts.configPath, problems: err instanceof ConfigError ? err.issues.length : undefined }, `reload rejected; keeping the running config: ${error}`)
        return { ok: false, error }
      }
    }
    const changes = planReload(this.current, next).map((c) => this.opts.supervisor === undefined && c.path.startsWith('sidecars[')
      ? { ...c, detail: `${c.detail} (not applied: this process runs no sidecars)` }
      : c)
    const effective = carryRestartSettings(this.current, next)
    let prepared: PreparedReload
    try {
      prepared = await this.opts.target.prepare(effective)
    } catch (err) {
      const error = `reload not applied, the running config stays: ${(err as Error).message}`
      log.error({ changes: changes.length }, error)
      return { ok: false, error, changes }
    }
    let switched: { rebuilt: string[]; workers?: number }
    try {
      switched = await prepared.commit()
    } catch (err) {
      const error = `reload failed while switching: ${(err as Error).message}`
      log.error(error)
      return { ok: false, error, changes }
    }
    this.current = effective
    const sc = this.opts.supervisor === undefined ? { started: [], stopped: [] } : await this.opts.supervisor.update(effective.sidecars)
    for (const c of changes) log[c.class === 'restart' ? 'warn' : 'info']({ path: c.path, class: c.class, detail: c.detail }, `config change (${c.class})`)
    log.info({ file: this.opts.configPath, ...summarize(changes), rebuilt: switched.rebuilt, started: sc.started, stopped: sc.stopped, workers: switched.workers }, changes.length === 0 ? 'config reloaded: no changes' : 'config reloaded')
    return { ok: true, changes, started: sc.started, stopped: sc.stopped, rebuilt: switched.rebuilt, ...(switched.workers === undefined ? {} : { workers: switched.workers }) }
  }
}
