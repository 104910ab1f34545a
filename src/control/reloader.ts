import type { Logger } from 'pino'
import { ConfigError, loadConfigFile } from '../config/load.js'
import type { Config } from '../config/schema.js'
import type { Supervisor } from '../sidecars/supervisor.js'
import type { ReloadAnswer } from './control.js'
import { carryRestartSettings, planReload, summarize } from './reload-plan.js'

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
}

/**
 * The one reload procedure (single process and cluster primary alike): validate the file once,
 * plan the changes, prepare everywhere, then switch everywhere (or nowhere), update sidecars,
 * and log and answer every change with its class. Reloads run one at a time, in order.
 */
export class Reloader {
  private current: Config
  private queue: Promise<unknown> = Promise.resolve()

  constructor(private readonly opts: ReloaderOptions) {
    this.current = opts.running
  }

  /** The config in effect (restart-class settings keep the values the process started with). */
  get running(): Config {
    return this.current
  }

  reload(config?: Config): Promise<ReloadAnswer> {
    const run = this.queue.then(() => this.run(config))
    this.queue = run.catch(() => undefined)
    return run
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
