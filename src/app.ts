import type { FastifyInstance } from 'fastify'
import { Gauge, Registry } from 'prom-client'
import type { Logger } from 'pino'
import type { Config, RouteCacheConfig } from './config/schema.js'
import type { Clock } from './clock.js'
import { createProxyMetrics } from './metrics/proxy-metrics.js'
import { createCompressionMetrics } from './compression/compression-metrics.js'
import { registerSplitGauges } from './metrics/split-metrics.js'
import type { ProxyDeps } from './routing/proxy-plugin.js'
import { ProxyListeners } from './listeners/proxy-listeners.js'
import { checkListenerTls } from './tls/check.js'
import { ConfigError } from './config/load.js'
import type { Runtime } from './routing/runtime.js'
import { RuntimeManager } from './routing/runtime-manager.js'
import { TunnelRegistry } from './routing/tunnel-registry.js'
import { Supervisor } from './sidecars/supervisor.js'
import { HttpCache, cachePartition } from './cache/http-cache.js'
import { purge, type PurgeResult } from './cache/purge.js'
import { createCacheMetrics } from './cache/cache-metrics.js'
import { createCacheStore, resolveStoreName } from './cache/store-registry.js'
import { createFillLock, type FillLock } from './cache/fill-lock.js'
import type { CacheStore } from './cache/store.js'
import { UpstreamDispatcher } from './upstreams/dispatcher.js'
import type { Control, ReloadAnswer } from './control/control.js'
import { NO_CACHE } from './control/control.js'
import { buildAdminServer } from './control/admin-server.js'
import { Resources } from './control/lifecycle.js'
import { LocalControl } from './control/local-control.js'
import { Reloader, type PreparedReload } from './control/reloader.js'
import { createFirewallResources } from './security/firewall-context.js'
import { createAccessLog } from './access-log/access-log.js'
import { ForwardService } from './forward/forward-service.js'
import type { Resolver } from './forward/safe-lookup.js'

export interface AppOptions {
  logger: Logger
  /** Start the config's sidecars (off in tests that only exercise the proxy). */
  sidecars?: boolean
  /** The file the config came from: reload() reads it again. */
  configPath?: string
  /** Time for health checks and sidecar backoff (tests pass a fake one). */
  clock?: Clock
  /** How the forward proxy resolves names (dns.lookup's shape; tests map names to chosen addresses). */
  forwardResolver?: Resolver
}

export type ReloadResult = ReloadAnswer

export interface SwitchyardApp {
  /** The first listener's Fastify instance. */
  proxy: FastifyInstance
  /** Every proxy listener (`listen`): listen() binds them all. */
  listeners: ProxyListeners
  admin: FastifyInstance
  registry: Registry
  runtime: () => Runtime
  supervisor: Supervisor | undefined
  /** Purges the cache (a 404 answer when no route caches). */
  purge: ((request: unknown) => Promise<PurgeResult>) | undefined
  /** What the admin listener and the signals act on (src/control). */
  control: Control
  /**
   * Applies `config` (validated), or reads and validates the config file again; a good one is
   * swapped in atomically (routes, pools, sidecars), a bad one is logged and the running config
   * stays. The answer lists every change with its class (live, rebuild, restart).
   */
  reload(config?: Config): Promise<ReloadResult>
  /** Builds what `config` needs without switching to it (a cluster reload's first phase). */
  prepareConfig(config: Config): Promise<PreparedReload>
  /** Switches to a validated config at once (a worker catching up with the primary's). */
  applyConfig(config: Config): Promise<{ rebuilt: string[] }>
  /** Marks the proxy listener bound (after listen) or not (the fixture's and tests' switch). */
  setReady(ready: boolean): void
  /** Listener bound, sidecars spawned, first health checks done, not draining: /readyz. */
  ready(): boolean
  /** Settles when the first round of every active health check has finished. */
  checked(): Promise<void>
  /**
   * The one graceful stop: readiness off, the listener drains (limits.shutdown_timeout_ms,
   * then the connections left are closed), then every resource closes, newest first.
   */
  shutdown(reason: string): Promise<void>
  /** Closes everything now (no drain). */
  close(): Promise<void>
  /** Opens the access log file again by name (SIGUSR1, after logrotate moved it). */
  reopenLogs(): void
}

/**
 * The composition root (DESIGN.md habit 2): the one place that names concrete classes. Each
 * resource is added to one close list where it is opened; a build that fails closes what it
 * had opened.
 */
export async function buildApp(config: Config, opts: AppOptions): Promise<SwitchyardApp> {
  const resources = new Resources(opts.logger)
  try {
    return await assembleApp(config, opts, resources)
  } catch (err) {
    await resources.closeAll()
    throw err
  }
}

async function assembleApp(config: Config, opts: AppOptions, resources: Resources): Promise<SwitchyardApp> {
  const registry = new Registry()
  const metrics = createProxyMetrics(registry)
  // Opened first, so it closes last: lines of requests that finish while draining are flushed.
  const accessLog = createAccessLog(config.logging.access_log, opts.logger)
  resources.add('access log', () => accessLog?.close())
  const dispatcher = new UpstreamDispatcher()
  resources.add('upstream connection pools', () => dispatcher.close())
  // Access rules and rate limits (security/): the Redis of shared limits opens only when a rule needs it.
  const firewall = createFirewallResources(registry, opts.logger.child({ component: 'firewall' }), () => running.firewall.error_log_interval_ms)
  resources.add('rate limit redis', () => firewall.close())
  const runtimes = new RuntimeManager(config, dispatcher, metrics, opts.logger, opts.clock, firewall.context)
  resources.add('health checks', () => runtimes.close())
  if (!await firewall.ready(2000)) opts.logger.warn('rate limit Redis not reachable yet; shared rate limits let requests through until it is')
  createCompressionMetrics(registry, () => runtimes.current.routes)
  registerSplitGauges(registry, () => runtimes.current)
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
    help: 'Whether each member is healthy (1) by active checks and outlier detection, or not (0); with workers, 1 only if every worker finds it healthy.',
    labelNames: ['pool', 'member'],
    registers: [registry],
    // Workers mode: each worker checks for itself; summed, N workers would read N.
    aggregator: 'min',
    collect() {
      this.reset()
      const now = Date.now()
      for (const pool of runtimes.current.pools.values()) for (const m of pool.members) this.labels(pool.name, m.name).set(m.healthy(now) ? 1 : 0)
    }
  })
  new Gauge({
    name: 'switchyard_upstream_member_drained',
    help: 'Whether each member is drained by hand (1: POST /admin/pools/<pool>/members/<member>/drain, no new requests) or not (0).',
    labelNames: ['pool', 'member'],
    registers: [registry],
    aggregator: 'max',
    collect() {
      this.reset()
      for (const pool of runtimes.current.pools.values()) for (const m of pool.members) this.labels(pool.name, m.name).set(m.drained ? 1 : 0)
    }
  })
  let listening = false
  let draining = false
  let checked = false
  const firstChecks = runtimes.firstChecks().then(() => { checked = true })

  for (const [name, pool] of Object.entries(config.pools)) {
    if (!pool.tls.verify && pool.members.some((m) => m.url.startsWith('https:'))) {
      opts.logger.warn({ pool: name }, 'TLS certificate verification is OFF for this pool (tls.verify: false): anyone on the path can impersonate its members')
    }
  }
  const proxyDeps: ProxyDeps = { runtime: current, metrics, dispatcher, cache: undefined, accessLog, tunnels: new TunnelRegistry(registry) }
  // The forward proxy's origins, tunnels and metrics (listeners are bound at start: restart-class).
  if (config.listen.some((l) => l.mode === 'forward')) {
    const forward = new ForwardService(registry, metrics, opts.forwardResolver)
    proxyDeps.forward = forward
    resources.add('forward proxy origins and tunnels', () => forward.close())
  }
  // The cache store exists only once a route caches (no Redis connection otherwise); a reload
  // that enables caching on a route creates it then.
  let cache: HttpCache | undefined
  let fillLock: FillLock | undefined
  const ensureCache = async (cfg: Config): Promise<void> => {
    const forwardCaches = cfg.forward.cache?.enabled === true && cfg.listen.some((l) => l.mode === 'forward')
    if (cache !== undefined || (!forwardCaches && !cfg.routes.some((r) => r.cache?.enabled === true))) return
    const holder: { store?: CacheStore } = {}
    const cacheMetrics = createCacheMetrics(registry, () => holder.store?.stats() ?? {})
    const storeName = resolveStoreName(cfg.cache, { logger: opts.logger })
    const nearHit = cacheMetrics.near.labels('hit')
    const nearMiss = cacheMetrics.near.labels('miss')
    const store = createCacheStore(cfg.cache, {
      logger: opts.logger.child({ component: 'cache' }),
      hooks: {
        onError: (op) => cacheMetrics.storeErrors.labels(storeName, op).inc(),
        observe: (op, seconds) => cacheMetrics.storeLatency.labels(storeName, op).observe(seconds),
        near: (result) => (result === 'hit' ? nearHit : nearMiss).inc()
      }
    })
    holder.store = store
    // Cluster-wide miss coalescing: with the Redis store only (cache.coalesce).
    const lock = createFillLock(cfg.cache, { logger: opts.logger.child({ component: 'cache' }) })
    fillLock = lock
    // Give Redis a moment to connect so the first requests can use it; never block startup on it.
    const r = store as Partial<{ ready(ms: number): Promise<boolean> }>
    const [storeUp] = await Promise.all([typeof r.ready === 'function' ? r.ready(2000) : true, lock?.ready(2000)])
    if (!storeUp) opts.logger.warn('cache store not reachable yet; serving without cache until it is')
    cache = new HttpCache({ store, metrics: cacheMetrics, log: opts.logger.child({ component: 'cache' }), lock })
    proxyDeps.cache = cache
    opts.logger.info({ store: storeName }, 'http cache enabled')
  }
  resources.add('cache store', () => cache?.store.close())
  resources.add('cache fill lock', () => fillLock?.close())
  await ensureCache(config)
  const listeners = await ProxyListeners.create(config, proxyDeps, opts.logger, registry, opts.configPath)
  resources.add('proxy listeners', () => listeners.close())
  const proxy = listeners.primary.fastify

  // Created even without sidecars, so a reload that adds some can start them.
  const supervisor = opts.sidecars === true
    ? new Supervisor(config.sidecars, opts.logger.child({ component: 'sidecars' }), registry, { clock: opts.clock })
    : undefined
  resources.add('sidecars', () => supervisor?.stop())

  // The config in effect: the boot config, then each applied reload's.
  let running = config
  const prepareConfig = async (next: Config): Promise<PreparedReload> => {
    await ensureCache(next)
    // A certificate pair that cannot be loaded rejects the reload, as a bad file does.
    const tlsIssues = await checkListenerTls(next, process.cwd())
    if (tlsIssues.length > 0) throw new ConfigError(opts.configPath ?? 'config', tlsIssues)
    const prepared = runtimes.prepare(next)
    return {
      commit: async () => {
        // Certificates are read again on every reload; a bad file keeps the old ones (logged).
        await listeners.reloadCertificates(next).catch((err: unknown) => opts.logger.warn({ err: (err as Error).message }, 'TLS certificates not reloaded; the listeners keep the ones they have'))
        const { rebuilt } = await prepared.commit()
        running = next
        return { rebuilt }
      },
      abort: () => prepared.abort()
    }
  }
  const applyConfig = async (next: Config): Promise<{ rebuilt: string[] }> => (await prepareConfig(next)).commit()
  const reloader = new Reloader({ configPath: opts.configPath, running: config, target: { prepare: prepareConfig }, supervisor, log: opts.logger })
  reloader.registerMetrics(registry)

  // Purge every pool partition of a URL (split variants store it once per pool), under the
  // key each caching route's query rule gives it.
  const purgeCache = (request: unknown): Promise<PurgeResult> => cache === undefined
    ? Promise.resolve(NO_CACHE)
    : purge(cache.store, [...runtimes.current.pools.keys(), ...(runtimes.current.forward?.route.invalidates ?? [])].map((p) => cachePartition(p)), request, queryRules(running))

  const ready = (): boolean => listening && !draining && checked && (supervisor?.allSpawned() ?? true)
  let stopping: Promise<void> | undefined
  const shutdown = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      draining = true
      const deadline = running.limits.shutdown_timeout_ms
      opts.logger.info({ reason, deadline_ms: deadline, connections: listeners.open }, 'shutting down: draining in-flight requests')
      // WebSocket tunnels get the same deadline, then are closed (routing/tunnel-registry.ts).
      const [, { forced }] = await Promise.all([proxyDeps.tunnels.drain(deadline), listeners.drain(deadline), proxyDeps.forward?.tunnels.drain(deadline)])
      if (forced > 0) opts.logger.warn({ deadline_ms: deadline, connections: forced }, 'shutdown deadline passed; closed the remaining connections')
      await resources.closeAll()
      opts.logger.info('stopped')
    })()
    return stopping
  }
  const control = new LocalControl({ registry, supervisor, runtime: current, purge: purgeCache, ready, reloader, shutdown, listenerUrls: () => listeners.all.map((l) => l.url) })
  const admin = await buildAdminServer(control, { logger: opts.logger, host: config.admin.host, token: () => running.admin.token })
  resources.add('admin listener', () => admin.close())

  return {
    proxy,
    listeners,
    admin,
    registry,
    runtime: current,
    supervisor,
    purge: purgeCache,
    control,
    reload: (next?: Config) => control.reload(next),
    prepareConfig,
    applyConfig,
    setReady(r: boolean) { listening = r },
    ready,
    checked: () => firstChecks,
    shutdown,
    async close() {
      draining = true
      await resources.closeAll()
    },
    reopenLogs() {
      accessLog?.reopen()
    }
  }
}

/** The caching routes' query rules: a purged URL is dropped under each key they give it. */
function queryRules(config: Config): RouteCacheConfig['query'][] {
  const rules = config.routes.flatMap((r) => r.cache?.enabled === true ? [r.cache.query] : [])
  return config.forward.cache?.enabled === true ? [...rules, config.forward.cache.query] : rules
}
