import { basename, dirname, resolve as resolvePath } from 'node:path'
import { watch } from 'node:fs'
import cluster from 'node:cluster'
import { ConfigError, loadConfigFile } from '../../config/load.js'
import type { Config } from '../../config/schema.js'
import { forwardLogReopen, runPrimary, runWorker, workerCount } from '../../cluster.js'
import type { Control } from '../../control/control.js'
import { LogFormatError, createLogger, exportLogFormat, resolveLogFormat } from '../../control/logger.js'
import { parseFlags } from '../flags.js'
import { formatHelp, type OptionSpecs } from '../help.js'
import { boundListeners, logListening, logStarting, shownUrl, watchWorkerListeners } from '../startup-lines.js'

export const summary = 'start the proxy, its admin listener and its sidecars'
export const usage = 'switchyard start [--config FILE] [--watch]'

export const options = {
  config: { type: 'string', short: 'c', default: process.env.SWITCHYARD_CONFIG ?? 'upstreams.yaml', value: 'FILE', help: 'the configuration to run', defaultText: '$SWITCHYARD_CONFIG, else upstreams.yaml' },
  watch: { type: 'boolean', default: false, help: 'reload the configuration whenever the file is saved (as SIGHUP does)' }
} satisfies OptionSpecs

export const help = formatHelp({
  name: 'start',
  summary,
  usage,
  description: 'Validates the configuration (as `switchyard check` does; a bad file is reported and nothing starts, exit 1), then binds the admin listener, spawns the sidecars and binds the proxy listeners. With `workers` other than 1 the work is shared by that many processes (node:cluster).\n\n' +
    'Signals: SIGHUP reloads the file (a bad file is logged and the running configuration stays); SIGUSR1 reopens the access log file (logrotate; the primary passes it to every worker); SIGTERM and SIGINT stop accepting, let in-flight requests finish within limits.shutdown_timeout_ms, stop the sidecars and exit 0.',
  options,
  env: [
    ['SWITCHYARD_CONFIG', 'the file to run when --config is not given'],
    ['SWITCHYARD_LOG_FORMAT', 'auto, json or pretty: wins over logging.format (auto: readable lines on a terminal, JSON otherwise)'],
    ['REDIS_URL', 'the Redis of the shared cache when cache.redis.url is not set (cache.store auto or redis)'],
    ['${VAR} in the file', 'any variable the file names, e.g. the shipped upstreams.yaml\'s SWITCHYARD_WORKERS, SWITCHYARD_PORT, LOG_LEVEL, DEMO_SIDECARS']
  ],
  examples: ['SWITCHYARD_WORKERS=2 switchyard start --config upstreams.yaml --watch']
})

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, options, usage)
  // Node opens its inspector on SIGUSR1 unless the process listens for it: we do from the start,
  // so logrotate signalling a process still starting never opens a debugger port.
  const reopen: { logs: () => void } = { logs: () => undefined }
  process.on('SIGUSR1', () => reopen.logs())
  if (cluster.isWorker) return runAsWorker(reopen)
  const configPath = String(values.config)
  let config: Config
  try {
    config = loadConfigFile(configPath)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`switchyard: ${err.message}\n`)
    return 1
  }
  let format: 'json' | 'pretty'
  try {
    format = resolveLogFormat(config)
  } catch (err) {
    if (!(err instanceof LogFormatError)) throw err
    process.stderr.write(`switchyard: ${err.message}\n`)
    return 1
  }
  const workers = workerCount(config)
  // Workers inherit the decision: their stdout is ours, but we decide for all (one format per terminal).
  if (workers > 1) exportLogFormat(format)
  const logger = createLogger(config, { format })
  logStarting(logger, { configPath, workers, format })
  // A stop asked for during startup is carried out as soon as startup ends (else the default
  // action would kill us with our sidecars still running).
  const early = new EarlySignals(['SIGTERM', 'SIGINT', 'SIGHUP'])
  let control: Control
  try {
    // One process or a cluster primary: either way a Control, the same admin API and signals.
    if (workers > 1) {
      const binds = watchWorkerListeners(config.listen)
      try {
        const primary = await runPrimary(configPath, config, logger)
        control = primary.control
        reopen.logs = forwardLogReopen
        // Usually done already: every worker listens when runPrimary returns, on its first listener at least.
        void binds.bound.then((urls) => logListening(logger, boundListeners(config.listen, urls), shownUrl(config.admin.host, primary.adminAddress)))
      } catch (err) {
        binds.stop()
        throw err
      }
    } else {
      // Imported here: a cluster primary never loads the proxy (undici, the cache, the routes).
      const { startServer } = await import('../../server.js')
      const server = await startServer(configPath, logger, config)
      control = server.app.control
      reopen.logs = () => server.app.reopenLogs()
      logListening(logger, boundListeners(config.listen, server.proxyAddresses), shownUrl(config.admin.host, server.adminAddress))
    }
  } catch (err) {
    // Everything started has been stopped already; this is the one line that says why.
    process.stderr.write(`switchyard: cannot start: ${(err as Error).message}\n`)
    early.remove()
    return 1
  }
  return await new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      void control.shutdown(signal).then(() => resolve(0), () => resolve(1))
    }
    early.remove()
    if (early.received !== undefined) return stop(early.received)
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
    // SIGHUP: reload upstreams.yaml; a bad file is logged and the running config stays.
    process.on('SIGHUP', () => { void control.reload() })
    if (values.watch === true) {
      // Editors save in several writes (or by rename): wait for the file to settle.
      let t: NodeJS.Timeout | undefined
      const file = resolvePath(configPath)
      // Watch the folder, not the file: a save by rename would end a watch on the file itself.
      watch(dirname(file), (_event, name) => {
        if (name !== basename(file)) return
        clearTimeout(t)
        t = setTimeout(() => { void control.reload() }, 250)
      }).unref()
    }
  })
}

/** A cluster worker: config from the primary; SIGTERM drains this worker alone (the primary replaces it). */
async function runAsWorker(reopen: { logs: () => void }): Promise<number> {
  // Ctrl-C reaches the whole process group: the primary coordinates the stop; reloads are its too.
  process.on('SIGINT', () => undefined)
  process.on('SIGHUP', () => undefined)
  const early = new EarlySignals(['SIGTERM'])
  let worker
  try {
    worker = await runWorker()
  } catch {
    return 1 // the primary prints why
  } finally {
    early.remove()
  }
  const w = worker
  reopen.logs = () => w.reopenLogs()
  if (early.received !== undefined) void w.shutdown(early.received)
  process.once('SIGTERM', () => { void w.shutdown('SIGTERM') })
  await w.done
  return 0
}

/** Remembers a stop signal received while starting up (a SIGHUP then is moot: the file was just read). */
class EarlySignals {
  received: string | undefined
  private readonly handler = (signal: NodeJS.Signals): void => { if (signal !== 'SIGHUP') this.received ??= signal }

  constructor(private readonly signals: NodeJS.Signals[]) {
    for (const s of signals) process.on(s, this.handler)
  }

  remove(): void {
    for (const s of this.signals) process.off(s, this.handler)
  }
}
