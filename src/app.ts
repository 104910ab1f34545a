import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { Gauge, Registry } from 'prom-client'
import type { Logger } from 'pino'
import type { Config } from './config/schema.js'
import { adminPlugin } from './admin/admin-plugin.js'
import { createProxyMetrics } from './metrics/proxy-metrics.js'
import { proxyPlugin, requestIdFrom } from './routing/proxy-plugin.js'
import { buildRuntime, type Runtime } from './routing/runtime.js'
import { Supervisor } from './sidecars/supervisor.js'
import { UpstreamDispatcher } from './upstreams/dispatcher.js'

export interface AppOptions {
  logger: Logger
  /** Start the config's sidecars (off in tests that only exercise the proxy). */
  sidecars?: boolean
}

export interface SwitchyardApp {
  proxy: FastifyInstance
  admin: FastifyInstance
  registry: Registry
  runtime: () => Runtime
  supervisor: Supervisor | undefined
  /** Marks the proxy ready (after listen) or not ready (draining). */
  setReady(ready: boolean): void
  close(): Promise<void>
}

/** The composition root (DESIGN.md habit 2): the one place that names concrete classes. */
export async function buildApp(config: Config, opts: AppOptions): Promise<SwitchyardApp> {
  const registry = new Registry()
  const metrics = createProxyMetrics(registry)
  const dispatcher = new UpstreamDispatcher()
  let runtime = buildRuntime(config, dispatcher)
  const current = (): Runtime => runtime
  new Gauge({
    name: 'switchyard_upstream_in_flight',
    help: 'Requests outstanding at each pool member.',
    labelNames: ['pool', 'member'],
    registers: [registry],
    collect() {
      for (const pool of runtime.pools.values()) for (const m of pool.members) this.labels(pool.name, m.name).set(m.inFlight)
    }
  })
  let ready = false
  const limits = config.limits

  const proxy = Fastify({
    loggerInstance: opts.logger as unknown as FastifyBaseLogger,
    // Per-request info logs cost more than the proxying itself; access_log opts in instead.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: (req) => requestIdFrom(req.headers['x-request-id']),
    http: {
      maxHeaderSize: limits.max_header_bytes,
      insecureHTTPParser: false,
      headersTimeout: limits.headers_timeout_ms,
      requireHostHeader: true
    },
    keepAliveTimeout: limits.keep_alive_timeout_ms,
    requestTimeout: limits.request_timeout_ms,
    connectionTimeout: 0,
    return503OnClosing: true,
    forceCloseConnections: 'idle'
  })
  await proxy.register(proxyPlugin, { runtime: current, metrics, dispatcher, cache: undefined, accessLog: config.logging.access_log })

  const supervisor = opts.sidecars === true && config.sidecars.length > 0
    ? new Supervisor(config.sidecars, opts.logger.child({ component: 'sidecars' }), registry)
    : undefined

  const admin = Fastify({ loggerInstance: opts.logger.child({ component: 'admin' }) as unknown as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) })
  await admin.register(adminPlugin, { registry, runtime: current, supervisor, ready: () => ready })

  return {
    proxy,
    admin,
    registry,
    runtime: current,
    supervisor,
    setReady(r: boolean) { ready = r },
    async close() {
      ready = false
      await proxy.close()
      await admin.close()
      await supervisor?.stop()
      await dispatcher.close()
      // Keep `runtime` referenced for reload (later) without lint noise.
      runtime = current()
    }
  }
}
