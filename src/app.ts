import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { Gauge, Registry } from 'prom-client'
import type { Logger } from 'pino'
import type { Config } from './config/schema.js'
import { ConfigError, loadConfigFile } from './config/load.js'
import { adminPlugin } from './admin/admin-plugin.js'
import { createProxyMetrics } from './metrics/proxy-metrics.js'
import type { ProxyDeps } from './routing/proxy-plugin.js'
import { buildProxyServer } from './routing/proxy-server.js'
import type { Runtime } from './routing/runtime.js'
import { RuntimeManager } from './routing/runtime-manager.js'
import { Supervisor } from './sidecars/supervisor.js'
import { HttpCache, cachePartition } from './cache/http-cache.js'
import { purge, type PurgeResult } from './cache/purge.js'
import { createCacheMetrics } from './cache/cache-metrics.js'
import { createCacheStore, resolveStoreName } from './cache/store-registry.js'
import type { CacheStore } from './cache/store.js'
import { isLoopback } from './admin/loopback.js'
import { UpstreamDispatcher } from './upstreams/dispatcher.js'

export interface AppOptions {
  logger: Logger
  /** Start the config's sidecars (off in tests that only exercise the proxy). */
  sidecars?: boolean
  /** The file the config came from: reload() reads it again. */
  configPath?: string
}

export type ReloadResult = { ok: true; started: string[]; stopped: string[] } | { ok: false; error: string }

export interface SwitchyardApp {
  proxy: FastifyInstance
  admin: FastifyInstance
  registry: Registry
  runtime: () => Runtime
  supervisor: Supervisor | undefined
  /** Purges the cache (undefined when no route caches). */
  purge: ((request: unknown) => Promise<PurgeResult>) | undefined
  /**
   * Reads and validates the config file again; a good one is swapped in atomically (routes,
   * pools, sidecars), a bad one is logged and the running config stays.
   */
  reload(): Promise<ReloadResult>
  /** Marks the proxy ready (after listen) or not ready (draining). */
  setReady(ready: boolean): void
  close(): Promise<void>
}

/** The composition root (DESIGN.md habit 2): the one place that names concrete classes. */
export async function buildApp(config: Config, opts: AppOptions): Promise<SwitchyardApp> {
  const registry = new Registry()
  const metrics = createProxyMetrics(registry)
  const dispatcher = new UpstreamDispatcher()
  const runtimes = new RuntimeManager(config, dispatcher, metrics, opts.logger)
  const current = (): Runtime => runtimes.current
  new Gauge({
    name: 'switchyard_upstream_in_flight',
    help: 'Requests outstanding at each pool member.',
    labelNames: ['pool', 'member'],
    registers: [registry],
    collect() {
      this.reset()
      for (const pool of runtimes.current.pools.values()) for (const m of pool.members) this.labels(pool.name, m.name).set(m.inFlight)
    }
  })
  new Gauge({
    name: 'switchyard_upstream_healthy',
    help: 'Whether each member is healthy (1) by active checks and outlier detection, or not (0).',
    labelNames: ['pool', 'member'],
    registers: [registry],
    collect() {
      this.reset()
      const now = Date.now()
      for (const pool of runtimes.current.pools.values()) for (const m of pool.members) this.labels(pool.name, m.name).set(m.healthy(now) ? 1 : 0)
    }
  })
  let ready = false

  for (const [name, pool] of Object.entries(config.pools)) {
    if (!pool.tls.verify && pool.members.some((m) => m.url.startsWith('https:'))) {
      opts.logger.warn({ pool: name }, 'TLS certificate verification is OFF for this pool (tls.verify: false): anyone on the path can impersonate its members')
    }
  }
  const proxyDeps: ProxyDeps = { runtime: current, metrics, dispatcher, cache: undefined, accessLog: config.logging.access_log }
  // The cache store exists only once a route caches (no Redis connection otherwise); a reload
  // that enables caching on a route creates it then.
  let cache: HttpCache | undefined
  const ensureCache = async (cfg: Config): Promise<void> => {
    if (cache !== undefined || !cfg.routes.some((r) => r.cache?.enabled === true)) return
    const holder: { store?: CacheStore } = {}
    const cacheMetrics = createCacheMetrics(registry, () => holder.store?.stats() ?? {})
    const storeName = resolveStoreName(cfg.cache, { logger: opts.logger })
    const store = createCacheStore(cfg.cache, {
      logger: opts.logger.child({ component: 'cache' }),
      hooks: {
        onError: (op) => cacheMetrics.storeErrors.labels(storeName, op).inc(),
        observe: (op, seconds) => cacheMetrics.storeLatency.labels(storeName, op).observe(seconds)
      }
    })
    holder.store = store
    // Give Redis a moment to connect so the first requests can use it; never block startup on it.
    const r = store as Partial<{ ready(ms: number): Promise<boolean> }>
    if (typeof r.ready === 'function' && !(await r.ready(2000))) opts.logger.warn('cache store not reachable yet; serving without cache until it is')
    cache = new HttpCache({ store, metrics: cacheMetrics, log: opts.logger.child({ component: 'cache' }) })
    proxyDeps.cache = cache
    opts.logger.info({ store: storeName }, 'http cache enabled')
  }
  await ensureCache(config)
  const proxy = await buildProxyServer(config, proxyDeps, opts.logger)

  const supervisor = opts.sidecars === true && config.sidecars.length > 0
    ? new Supervisor(config.sidecars, opts.logger.child({ component: 'sidecars' }), registry)
    : undefined

  // Purge every pool partition of a URL: split variants store it once per pool.
  const purgeCache = (request: unknown): Promise<PurgeResult> => cache === undefined
    ? Promise.resolve({ status: 404, body: { error: 'no route has the cache enabled' } })
    : purge(cache.store, [...runtimes.current.pools.keys()].map((p) => cachePartition(p)), request)

  let running = config
  let reloading: Promise<ReloadResult> | undefined
  const reload = (): Promise<ReloadResult> => {
    reloading ??= (async (): Promise<ReloadResult> => {
      if (opts.configPath === undefined) return { ok: false, error: 'no config file to reload from' }
      let next: Config
      try {
        next = loadConfigFile(opts.configPath)
      } catch (err) {
        const error = err instanceof ConfigError ? err.message : String(err)
        opts.logger.error({ file: opts.configPath, problems: err instanceof ConfigError ? err.issues.length : undefined }, `reload rejected; keeping the running config: ${error}`)
        return { ok: false, error }
      }
      for (const k of ['listen', 'admin', 'workers', 'cache'] as const) {
        if (JSON.stringify(next[k]) !== JSON.stringify(running[k])) opts.logger.warn({ key: k }, `${k} changed: takes effect after a restart`)
      }
      await ensureCache(next)
      await runtimes.swap(next)
      const sc = supervisor === undefined ? { started: [], stopped: [] } : await supervisor.update(next.sidecars)
      running = next
      opts.logger.info({ file: opts.configPath, routes: next.routes.length, pools: Object.keys(next.pools).length, ...sc }, 'config reloaded')
      return { ok: true, ...sc }
    })().finally(() => { reloading = undefined })
    return reloading
  }

  const admin = Fastify({ loggerInstance: opts.logger.child({ component: 'admin' }) as unknown as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) })
  await admin.register(adminPlugin, {
    metrics: async () => {
      const own = await registry.metrics()
      const sidecars = supervisor === undefined ? '' : await supervisor.collectMetrics()
      return sidecars === '' ? own : `${own}\n${sidecars}`
    },
    contentType: registry.contentType,
    pools: async () => {
      const pools: Record<string, unknown> = {}
      for (const [name, pool] of runtimes.current.pools) pools[name] = pool.toJSON()
      return { pools }
    },
    supervisor,
    purge: purgeCache,
    ready: () => ready,
    reload,
    token: config.admin.token,
    loopbackOnly: isLoopback(config.admin.host)
  })

  return {
    proxy,
    admin,
    registry,
    runtime: current,
    supervisor,
    purge: purgeCache,
    reload,
    setReady(r: boolean) { ready = r },
    async close() {
      ready = false
      await proxy.close()
      await admin.close()
      await supervisor?.stop()
      runtimes.close()
      await dispatcher.close()
      await cache?.store.close()
    }
  }
}
