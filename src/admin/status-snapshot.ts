/**
 * What one proxy process reports for the status page (GET /admin/status): its listeners,
 * routes, pools and members with their cumulative counters, splits and cache, read from the
 * live runtime and from the metrics' own state. Counters are cumulative so snapshots of several
 * workers add up (status-merge.ts) and two snapshots give rates (status-window.ts).
 */
import type { Registry } from 'prom-client'
import type { Config, ListenerConfig, RouteConfig } from '../config/schema.js'
import type { Runtime } from '../routing/runtime.js'
import type { MemberView } from '../upstreams/member.js'

export interface ListenerStatus {
  name: string
  /** Where it listens: the bound URL once listening, else host:port from the config. */
  address: string
  /** http or https; tcp or udp for an L4 listener (then `pool` names what it balances over). */
  protocol: 'http' | 'https' | 'tcp' | 'udp'
  pool?: string
  tls: boolean
  /** HTTP/2: "h2" offered by ALPN on TLS, "h2c" with prior knowledge on plain, else null. */
  http2: 'h2' | 'h2c' | null
  /** Plain listeners that redirect everything to https on this port. */
  redirect_https: number | null
}

export interface RouteStatus {
  name: string
  host: string | null
  path_prefix: string
  methods: string[] | null
  pool: string | null
  split: string | null
  cache: boolean
}

export interface MemberSnapshot extends MemberView {
  /** Cumulative counts of switchyard_upstream_request_duration_seconds, one per bound of `latency_le` then +Inf. */
  latency: number[]
  /** Workers mode: how many workers run it, and how many of them see it healthy. */
  workers?: number
  healthy_workers?: number
}

export interface PoolSnapshot {
  name: string
  balancer: string
  panic: boolean
  in_flight: number
  queued: number
  members: MemberSnapshot[]
}

export interface SplitSnapshot {
  name: string
  route: string
  variants: { name: string; pool: string; weight: number; assigned: number }[]
}

export interface CacheSnapshot {
  enabled: boolean
  store: string | null
  entries: number | null
  bytes: number | null
  /** switchyard_cache_lookups_total summed over routes, by result (hit, miss, stale, ...). */
  lookups: Record<string, number>
}

export interface StatusSnapshot {
  /** Wall-clock milliseconds when it was taken. */
  at: number
  listeners: ListenerStatus[]
  routes: RouteStatus[]
  pools: PoolSnapshot[]
  /** Upper bounds (seconds) of the latency buckets; each member's `latency` has one more count, +Inf. */
  latency_le: number[]
  splits: SplitSnapshot[]
  cache: CacheSnapshot
}

interface MetricValue { value: number; labels: Record<string, string | number | undefined>; metricName?: string }

async function values(registry: Registry, name: string): Promise<MetricValue[]> {
  const metric = registry.getSingleMetric(name)
  if (metric === undefined) return []
  const got = await metric.get() as { values: MetricValue[] }
  return got.values
}

export function listenerStatus(l: ListenerConfig, url: string | undefined): ListenerStatus {
  const tls = l.tls !== undefined
  const hostPort = `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`
  return {
    name: l.name ?? hostPort,
    address: url ?? hostPort,
    protocol: l.protocol === 'tcp' || l.protocol === 'udp' ? l.protocol : tls ? 'https' : 'http',
    ...(l.protocol === 'tcp' || l.protocol === 'udp' ? { pool: l.pool } : {}),
    tls,
    http2: tls ? (l.tls?.alpn.includes('h2') === true ? 'h2' : null) : (l.h2c ? 'h2c' : null),
    redirect_https: !tls && l.redirect_https !== undefined ? l.redirect_https.port : null
  }
}

export function routeStatus(r: RouteConfig): RouteStatus {
  return {
    name: r.name,
    host: r.match.host ?? null,
    path_prefix: r.match.path_prefix,
    methods: r.match.methods ?? null,
    pool: r.pool ?? null,
    split: r.split?.name ?? null,
    cache: r.cache?.enabled === true
  }
}

/** The config's listeners, routes and splits, without live counters (the cluster primary's view). */
export function configParts(config: Config, urls: readonly (string | undefined)[] = []): Pick<StatusSnapshot, 'listeners' | 'routes'> {
  return {
    listeners: config.listen.map((l, i) => listenerStatus(l, urls[i])),
    routes: config.routes.map(routeStatus)
  }
}

/** One process's snapshot: its runtime's pools and the metrics in its registry. */
export async function takeSnapshot(rt: Runtime, registry: Registry, listenerUrls: readonly (string | undefined)[], now = Date.now()): Promise<StatusSnapshot> {
  const config = rt.config
  const [durations, splitValues, lookupValues, entryValues, byteValues] = await Promise.all([
    values(registry, 'switchyard_upstream_request_duration_seconds'),
    values(registry, 'switchyard_split_assignments_total'),
    values(registry, 'switchyard_cache_lookups_total'),
    values(registry, 'switchyard_cache_entries'),
    values(registry, 'switchyard_cache_bytes')
  ])

  // Latency buckets by pool and member, in the histogram's bucket order.
  // The bucket bounds from the histogram itself (prom-client's upperBounds), else from its values.
  const histogram = registry.getSingleMetric('switchyard_upstream_request_duration_seconds') as unknown as { upperBounds?: unknown } | undefined
  const bounds = Array.isArray(histogram?.upperBounds) ? (histogram.upperBounds as unknown[]).filter((x): x is number => typeof x === 'number' && Number.isFinite(x)) : []
  const le: number[] = [...bounds]
  const buckets = new Map<string, number[]>()
  for (const v of durations) {
    if (v.metricName?.endsWith('_bucket') !== true) continue
    const key = `${String(v.labels.pool)}\u0000${String(v.labels.member)}`
    const list = buckets.get(key) ?? []
    list.push(v.value)
    buckets.set(key, list)
    if (bounds.length === 0 && buckets.size === 1 && v.labels.le !== '+Inf') le.push(Number(v.labels.le))
  }
  const empty = new Array<number>(le.length + 1).fill(0)

  const pools: PoolSnapshot[] = [...rt.pools.values()].map((p) => ({
    name: p.name,
    balancer: p.balancerName,
    panic: p.panicking,
    in_flight: p.admission.inFlight,
    queued: p.admission.queued,
    members: p.members.map((m): MemberSnapshot => ({
      ...m.view(now),
      latency: buckets.get(`${p.name}\u0000${m.name}`) ?? empty
    }))
  }))

  const assigned = new Map<string, number>()
  for (const v of splitValues) {
    const key = `${String(v.labels.split)}\u0000${String(v.labels.variant)}`
    assigned.set(key, (assigned.get(key) ?? 0) + v.value)
  }
  const splits: SplitSnapshot[] = config.routes.flatMap((r) => r.split === undefined
    ? []
    : [{
        name: r.split.name,
        route: r.name,
        variants: r.split.variants.map((v) => ({ name: v.name, pool: v.pool, weight: v.weight, assigned: assigned.get(`${r.split?.name ?? ''}\u0000${v.name}`) ?? 0 }))
      }])

  const lookups: Record<string, number> = {}
  for (const v of lookupValues) {
    const result = String(v.labels.result)
    lookups[result] = (lookups[result] ?? 0) + v.value
  }
  const cacheEnabled = config.routes.some((r) => r.cache?.enabled === true)
  const cache: CacheSnapshot = {
    enabled: cacheEnabled,
    store: cacheEnabled ? config.cache.store : null,
    entries: entryValues[0]?.value ?? null,
    bytes: byteValues[0]?.value ?? null,
    lookups
  }

  return { at: now, ...configParts(config, listenerUrls), pools, latency_le: le, splits, cache }
}
