/**
 * `workers: N`: N proxy processes share the listening port (node:cluster). The primary runs no
 * proxy: its ClusterControl (src/control/cluster-control.ts) forks and replaces workers and
 * fans reloads, purges and pool views out to them; the primary also runs the sidecars and the
 * admin listener. Workers get the validated config from the primary over IPC.
 */
import cluster from 'node:cluster'
import { availableParallelism } from 'node:os'
import { AggregatorRegistry, Registry } from 'prom-client'
import { collectProcessMetrics } from './metrics/proxy-metrics.js'
import { shareSelfSigned } from './tls/self-signed.js'
import type { Logger } from 'pino'
import type { SwitchyardApp } from './app.js'
import type { Config } from './config/schema.js'
import { Supervisor } from './sidecars/supervisor.js'
import { buildAdminServer } from './control/admin-server.js'
import { ClusterControl } from './control/cluster-control.js'
import { MSG } from './control/cluster-protocol.js'
import { Resources, asStartupError, listenOn } from './control/lifecycle.js'
import { createLogger } from './control/logger.js'
import { WorkerChannel } from './control/worker-channel.js'

export function workerCount(config: Config): number {
  return config.workers === 0 ? availableParallelism() : config.workers
}

/**
 * The primary, all or nothing: admin listener, sidecars, then the workers; returns once every
 * worker listens. On any failure everything started is stopped and a StartupError says why.
 */
export async function runPrimary(configPath: string, config: Config, logger: Logger): Promise<{ control: ClusterControl; adminAddress: string }> {
  const resources = new Resources(logger)
  const registry = new Registry()
  collectProcessMetrics(registry, 'switchyard_primary_')
  // Created even without sidecars, so a reload that adds some can start them.
  const supervisor = new Supervisor(config.sidecars, logger.child({ component: 'sidecars' }), registry)
  // Every worker serves the same self-signed certificate: made here, inherited through the environment.
  if (config.listen.some((l) => l.tls?.self_signed === true)) await shareSelfSigned()
  const control = new ClusterControl({ size: workerCount(config), config, configPath, logger, registry, supervisor, resources })
  try {
    const admin = await buildAdminServer(control, { logger, host: config.admin.host, token: () => control.reloader.running.admin.token })
    resources.add('admin listener', () => admin.close())
    const adminAddress = await listenOn(admin, 'admin listener', config.admin.host, config.admin.port)
    resources.add('sidecars', () => supervisor.stop())
    supervisor.start()
    await supervisor.spawned()
    await control.start()
    logger.info({ workers: workerCount(config), admin: adminAddress, listen: config.listen.map((l) => `${l.host}:${l.port}`) }, 'switchyard cluster listening')
    return { control, adminAddress }
  } catch (err) {
    await resources.closeAll()
    throw asStartupError(err)
  }
}

export interface WorkerHandle {
  /** Drains this worker (the primary starts its replacement) and closes its app. */
  shutdown(reason: string): Promise<void>
  /** Settles once the worker has shut down, whatever asked it to. */
  done: Promise<void>
  /** Opens this worker's access log file again (SIGUSR1, forwarded by the primary). */
  reopenLogs(): void
}

/**
 * A worker: the proxy listener only, with the config the primary hands it. A startup failure
 * is told to the primary (which prints it) before the worker exits.
 */
export async function runWorker(): Promise<WorkerHandle> {
  const channel = new WorkerChannel()
  const { config } = await channel.receiveConfig()
  const logger = createLogger(config).child({ worker: process.pid })
  let app: SwitchyardApp | undefined
  try {
    // Only workers load the proxy: the primary stays small (admin listener, sidecars, the workers).
    const { buildApp } = await import('./app.js')
    app = await buildApp(config, { logger, sidecars: false })
    // Let the primary's AggregatorRegistry read this worker's registry.
    new AggregatorRegistry()
    AggregatorRegistry.setRegistries([app.registry])
    // The primary's messages (drains by hand above all) apply before the first request: a
    // replacement worker must not serve a drained member while its listeners are being bound.
    channel.serve(app, logger)
    await app.listeners.listen()
  } catch (err) {
    const e = asStartupError(err)
    channel.send({ type: MSG.failed, error: e.message })
    await app?.close()
    throw e
  }
  const running = app
  running.setReady(true)
  void running.checked().then(() => channel.send({ type: MSG.ready }))
  let closing: Promise<void> | undefined
  let finished!: () => void
  const done = new Promise<void>((resolve) => { finished = resolve })
  const shutdown = (reason: string): Promise<void> => {
    closing ??= (async () => {
      channel.send({ type: MSG.draining })
      await running.shutdown(reason)
      finished()
    })()
    return closing
  }
  // The primary is gone: stop too (no orphaned workers).
  process.once('disconnect', () => { void shutdown('the primary is gone') })
  return { shutdown, done, reopenLogs: () => running.reopenLogs() }
}

/**
 * SIGUSR1 in the primary (logrotate's postrotate): every worker reopens its access log. Sent on
 * as a signal, not over IPC, so `kill -USR1 <worker>` does the same for one worker.
 */
export function forwardLogReopen(): void {
  for (const w of Object.values(cluster.workers ?? {})) {
    if (w !== undefined && !w.isDead()) w.process.kill('SIGUSR1')
  }
}
