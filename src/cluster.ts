/**
 * `workers: N`: N proxy processes share the listening port (node:cluster). The primary runs no
 * proxy: it forks and restarts workers, runs the sidecars and the admin listener, aggregates
 * the workers' metrics (prom-client AggregatorRegistry), and passes reloads and shutdown on.
 */
import cluster, { type Worker } from 'node:cluster'
import { availableParallelism } from 'node:os'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { Logger } from 'pino'
import { buildApp, type ReloadResult } from './app.js'
import type { PurgeResult } from './cache/purge.js'
import { ConfigError, loadConfigFile } from './config/load.js'
import type { Config } from './config/schema.js'
import { Supervisor } from './sidecars/supervisor.js'
import { adminPlugin } from './admin/admin-plugin.js'
import { isLoopback } from './admin/loopback.js'

const RELOAD = 'switchyard:reload'
const POOLS = 'switchyard:pools'
const PURGE = 'switchyard:purge'

interface WorkerMessage { type: string; id: number; result?: unknown; payload?: unknown }

export function workerCount(config: Config): number {
  return config.workers === 0 ? availableParallelism() : config.workers
}

export interface ClusterHandle {
  adminAddress: string
  shutdown(reason: string): Promise<void>
  reload(): Promise<ReloadResult>
}

/** The primary: returns once every worker listens. */
export async function runPrimary(configPath: string, config: Config, logger: Logger): Promise<ClusterHandle> {
  const n = workerCount(config)
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'switchyard_primary_' })
  const aggregator = new AggregatorRegistry()
  const restarts = new Counter({ name: 'switchyard_worker_restarts_total', help: 'Workers replaced after they died.', registers: [registry] })
  const live = new Set<Worker>()
  new Gauge({ name: 'switchyard_workers', help: 'Proxy worker processes running.', registers: [registry], collect() { this.set(live.size) } })
  const supervisor = config.sidecars.length > 0 ? new Supervisor(config.sidecars, logger.child({ component: 'sidecars' }), registry) : undefined
  supervisor?.start()

  let stopping = false
  let started = false
  let startupFailure: ((err: Error) => void) | undefined
  let listening = 0
  let fails = 0
  let nextId = 1
  const fork = (): Worker => {
    const w = cluster.fork({ SWITCHYARD_WORKER: '1' })
    live.add(w)
    w.once('listening', () => { listening++; fails = 0 })
    let listened = false
    w.once('listening', () => { listened = true })
    w.once('exit', (code, signal) => {
      live.delete(w)
      if (listened) listening = Math.max(0, listening - 1)
      if (stopping) return
      if (!started && !listened) {
        // A worker that cannot start (bad port, config) will not start on a retry either.
        startupFailure?.(new Error(`worker ${w.process.pid} exited during startup (${signal ?? `code ${code}`}); see its message above`))
        return
      }
      // A worker that dies is replaced; quick repeated deaths back off (capped at 5 s).
      fails++
      const delay = Math.min(5000, 100 * 2 ** (fails - 1))
      logger.error({ pid: w.process.pid, code, signal, restart_in_ms: delay }, 'worker died; replacing it')
      restarts.inc()
      setTimeout(() => { if (!stopping) fork() }, delay)
    })
    return w
  }
  for (let i = 0; i < n; i++) fork()

  const ask = (w: Worker, type: string, timeoutMs = 5000, payload?: unknown): Promise<unknown> => new Promise((resolve) => {
    const id = nextId++
    const onMsg = (m: WorkerMessage): void => {
      if (m?.type === type && m.id === id) { clearTimeout(t); w.off('message', onMsg); resolve(m.result) }
    }
    const t = setTimeout(() => { w.off('message', onMsg); resolve({ ok: false, error: `worker ${w.process.pid} did not answer` }) }, timeoutMs)
    w.on('message', onMsg)
    w.send({ type, id, payload })
  })

  const reload = async (): Promise<ReloadResult> => {
    let next: Config
    try {
      next = loadConfigFile(configPath)
    } catch (err) {
      const error = err instanceof ConfigError ? err.message : String(err)
      logger.error(`reload rejected; keeping the running config: ${error}`)
      return { ok: false, error }
    }
    const results = await Promise.all([...live].map((w) => ask(w, RELOAD) as Promise<ReloadResult>))
    const failed = results.find((r) => !r.ok)
    if (failed !== undefined) return failed
    const sc = supervisor === undefined ? { started: [], stopped: [] } : await supervisor.update(next.sidecars)
    logger.info({ workers: results.length, ...sc }, 'config reloaded in every worker')
    return { ok: true, ...sc }
  }

  const admin: FastifyInstance = Fastify({ loggerInstance: logger.child({ component: 'admin' }) as unknown as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) })
  await admin.register(adminPlugin, {
    metrics: async () => {
      const [workers, own, sidecars] = await Promise.all([aggregator.clusterMetrics(), registry.metrics(), supervisor?.collectMetrics() ?? Promise.resolve('')])
      return [workers, own, sidecars].filter((s) => s !== '').join('\n')
    },
    contentType: registry.contentType,
    pools: async () => {
      const views = await Promise.all([...live].map(async (w) => ({ pid: w.process.pid, ...(await ask(w, POOLS, 2000) as object) })))
      return { pools: (views[0] as { pools?: unknown } | undefined)?.pools ?? {}, workers: views }
    },
    supervisor,
    // Each worker purges its own store (a memory store is per worker; Redis is shared and idempotent).
    purge: async (request: unknown) => {
      const results = await Promise.all([...live].map((w) => ask(w, PURGE, 5000, request) as Promise<PurgeResult | { ok: false; error: string }>))
      const first = results.find((r): r is PurgeResult => 'status' in r)
      if (first === undefined) return { status: 503, body: { error: 'no worker answered the purge' } }
      if (first.status !== 200) return first
      const purged = results.reduce((n, r) => n + ('status' in r && typeof r.body.purged === 'number' ? r.body.purged : 0), 0)
      return { status: 200, body: { ...first.body, purged, workers: results.length } }
    },
    ready: () => !stopping && listening >= n,
    reload,
    token: config.admin.token,
    loopbackOnly: isLoopback(config.admin.host)
  })
  const adminAddress = await admin.listen({ host: config.admin.host, port: config.admin.port })
  try {
    await new Promise<void>((resolve, reject) => {
      const check = setInterval(() => { if (listening >= n) { clearInterval(check); resolve() } }, 20)
      startupFailure = (err) => { clearInterval(check); reject(err) }
    })
  } catch (err) {
    stopping = true
    for (const w of live) w.process.kill('SIGTERM')
    await supervisor?.stop()
    await admin.close()
    throw err
  }
  started = true
  logger.info({ workers: n, admin: adminAddress, listen: `${config.listen.host}:${config.listen.port}` }, 'switchyard cluster listening')

  return {
    adminAddress,
    reload,
    async shutdown(reason: string): Promise<void> {
      stopping = true
      logger.info({ reason }, 'shutting down workers')
      const deadline = config.limits.shutdown_timeout_ms + 2000
      await Promise.all([...live].map((w) => new Promise<void>((resolve) => {
        const killer = setTimeout(() => w.process.kill('SIGKILL'), deadline)
        w.once('exit', () => { clearTimeout(killer); resolve() })
        w.process.kill('SIGTERM')
      })))
      await supervisor?.stop()
      await admin.close()
      logger.info('stopped')
    }
  }
}

/** A worker: the proxy listener only; reload and pool views are asked for by the primary. */
export async function runWorker(configPath: string, logger: Logger): Promise<{ shutdown(reason: string): Promise<void> }> {
  const config = loadConfigFile(configPath)
  const app = await buildApp(config, { logger: logger.child({ worker: process.pid }), sidecars: false, configPath })
  // Let the primary's AggregatorRegistry read this worker's registry.
  new AggregatorRegistry()
  AggregatorRegistry.setRegistries([app.registry])
  process.on('message', (m: WorkerMessage) => {
    if (m?.type === RELOAD) void app.reload().then((result) => process.send?.({ type: RELOAD, id: m.id, result }))
    if (m?.type === PURGE) {
      const p = app.purge === undefined ? Promise.resolve({ status: 404, body: { error: 'no route has the cache enabled' } }) : app.purge(m.payload)
      void p.then((result) => process.send?.({ type: PURGE, id: m.id, result }))
    }
    if (m?.type === POOLS) {
      const pools: Record<string, unknown> = {}
      for (const [name, p] of app.runtime().pools) pools[name] = p.toJSON()
      process.send?.({ type: POOLS, id: m.id, result: { pools } })
    }
  })
  await app.proxy.listen({ host: config.listen.host, port: config.listen.port })
  app.setReady(true)
  // The primary is gone: stop too (no orphaned workers).
  process.once('disconnect', () => { void app.close().finally(() => process.exit(0)) })
  let closing: Promise<void> | undefined
  return {
    shutdown(reason: string): Promise<void> {
      closing ??= (async () => {
        logger.info({ reason, worker: process.pid }, 'worker draining')
        app.setReady(false)
        const t = setTimeout(() => app.proxy.server.closeAllConnections(), config.limits.shutdown_timeout_ms)
        await app.close()
        clearTimeout(t)
        // Closing the IPC channel lets the worker exit once its last socket is gone.
        if (process.connected) process.disconnect()
      })()
      return closing
    }
  }
}
