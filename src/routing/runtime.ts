import { BlockList } from 'node:net'
import type { Config, RetriesConfig, RouteCacheConfig, RouteWebSocketConfig } from '../config/schema.js'
import { parseCidr } from '../config/load.js'
import { SplitAssigner } from '../balancing/split.js'
import type { SplitEvent, SplitState } from '../balancing/split-state.js'
import { Pool } from '../upstreams/pool.js'
import { compileCompressPolicy, type CompressPolicy } from '../compression/compress-policy.js'
import type { UpstreamDispatcher } from '../upstreams/dispatcher.js'
import { RouteTable } from './route-table.js'
import { compileFirewalls, type FirewallContext, type RouteFirewall } from '../security/firewall.js'
import { compileRouteAccessLog, globalCapture, type RouteAccessLog } from '../access-log/header-capture.js'
import { ForwardPolicy } from '../forward/forward-policy.js'

/** A route turned into runtime objects: where it sends traffic and its per-route limits. */
export interface RouteRuntime {
  readonly name: string
  readonly pool: Pool | undefined
  readonly split: SplitAssigner<Pool> | undefined
  readonly maxBodyBytes: number
  readonly cache: RouteCacheConfig | undefined
  /** Response compression (the `compress` block compiled); undefined when the route does not compress. */
  readonly compress: CompressPolicy | undefined
  /** WebSocket tunnels (upgrade.ts). */
  readonly websocket: RouteWebSocketConfig
  /** The route's `access_log` block compiled; undefined: logged with the global settings. */
  readonly accessLog: RouteAccessLog | undefined
  readonly retries: RetriesConfig
  readonly retryOn: ReadonlySet<number>
  readonly retryMethods: ReadonlySet<string>
  readonly timeoutMs: number
  /** The access rules (global, then the route's), compiled; undefined when there are none. */
  readonly firewall: RouteFirewall | undefined
  /**
   * Every pool name of the config: a successful unsafe request invalidates its URL's copy in
   * each (split variants store a URL once per pool, and routes may split one URL by method).
   */
  readonly invalidates: readonly string[]
}

/**
 * Everything a request needs, built once from a validated config and swapped whole on reload
 * (DESIGN.md: the hot path does no YAML walking and no regex building).
 */
export interface Runtime {
  readonly config: Config
  readonly table: RouteTable<RouteRuntime>
  readonly pools: ReadonlyMap<string, Pool>
  readonly routes: readonly RouteRuntime[]
  readonly trusted: BlockList | undefined
  /** The forward proxy's rules, when a listener has mode: forward (src/forward). */
  readonly forward: ForwardPolicy | undefined
  /** Each split by name (routes naming one split share its assigner and state). */
  readonly splits: ReadonlyMap<string, SplitAssigner<Pool>>
}

export interface RuntimeOptions {
  /** Wall-clock milliseconds for split ramps and windows (a test's fake clock). */
  now?: () => number
  /** Split guardrail rollbacks, resets and promotions (the logger's warn). */
  onSplitEvent?: (e: SplitEvent) => void
}

/**
 * Builds the runtime for a config. With `previous` (a reload), members that stayed in the same
 * pool with the same origin keep their health state and counters. `firewall` is what access
 * rules need (metrics, rate limiters); a config with rules is refused without it.
 */
export function buildRuntime(config: Config, dispatcher: UpstreamDispatcher, previous?: Runtime, opts: RuntimeOptions = {}, firewall?: FirewallContext): Runtime {
  // First: a JWKS file that cannot be read refuses the config before anything is built.
  const firewalls = compileFirewalls(config, firewall)
  const pools = new Map<string, Pool>()
  for (const [name, cfg] of Object.entries(config.pools)) {
    const old = previous?.pools.get(name)
    const pool = new Pool(name, cfg, old)
    pools.set(name, pool)
    if (old !== undefined) {
      for (const m of pool.members) {
        const prev = old.members.find((o) => o.origin === m.origin)
        if (prev !== undefined) m.adopt(prev)
      }
      pool.recompute()
      pool.resumeEjections()
    }
    // L4 pools (tcp://, udp://) are dialled by src/l4, not through undici.
    if (pool.protocol !== 'http') continue
    for (const m of pool.members) {
      dispatcher.ensure(m.origin, {
        connectTimeoutMs: cfg.timeouts.connect_ms,
        maxConnections: cfg.max_connections,
        verifyTls: cfg.tls.verify,
        http2: cfg.http2
      })
    }
  }
  const poolOf = (name: string): Pool => pools.get(name) as Pool // references checked by loadConfig
  const poolNames = [...pools.keys()]
  // A route keeps its compression counters across a reload (they are metrics: never reset by one).
  const counters = new Map(previous?.routes.map((r) => [r.name, r.compress?.counters]) ?? [])
  const capture = globalCapture(config.logging.access_log)
  // A split keeps its state (ramp start, window, rollbacks) across a reload that leaves it unchanged.
  const splits = new Map<string, SplitAssigner<Pool>>()
  const splitOf = (cfg: NonNullable<Config['routes'][number]['split']>): SplitAssigner<Pool> => {
    let s = splits.get(cfg.name)
    if (s === undefined) {
      const prev: SplitState | undefined = previous?.splits.get(cfg.name)?.state
      s = new SplitAssigner(cfg, poolOf, { now: opts.now, previous: prev })
      if (opts.onSplitEvent !== undefined) s.state.onEvent = opts.onSplitEvent
      splits.set(cfg.name, s)
    }
    return s
  }
  const routes = config.routes.map((r): RouteRuntime => ({
    name: r.name,
    pool: r.pool === undefined ? undefined : poolOf(r.pool),
    split: r.split === undefined ? undefined : splitOf(r.split),
    maxBodyBytes: r.max_body_bytes ?? config.limits.max_body_bytes,
    cache: r.cache,
    compress: compileCompressPolicy(r.compress, counters.get(r.name)),
    websocket: r.websocket,
    accessLog: compileRouteAccessLog(config.logging.access_log, r.access_log, capture),
    retries: r.retries,
    retryOn: new Set(r.retries.on_status),
    retryMethods: new Set(r.retries.methods),
    timeoutMs: r.timeout_ms,
    firewall: firewalls.get(r.name),
    invalidates: poolNames
  }))
  const table = new RouteTable(config.routes.map((r, i) => ({ config: r, value: routes[i] })))
  let trusted: BlockList | undefined
  if (config.trusted_proxies.length > 0) {
    trusted = new BlockList()
    for (const c of config.trusted_proxies) {
      const p = parseCidr(c)
      if (p !== undefined) trusted.addSubnet(p.address, p.prefix, p.family)
    }
  }
  // Compiled on every build, so a reload re-reads the block list files (a bad one rejects it).
  const forward = config.listen.some((l) => l.mode === 'forward') ? new ForwardPolicy(config) : undefined
  return { config, table, pools, routes, trusted, splits, forward }
}
