/**
 * What a reload changes, and how each change takes effect (pure: no I/O, no Fastify):
 * - live: the next runtime has it (routes, pools, members, balancers, health checks, outlier,
 *   splits, retries, cache rules, trusted proxies, access rules, sidecars, the admin token);
 * - rebuild: the origin's undici connection pool is replaced, the old one finishes its requests
 *   (a pool's tls.verify, timeouts.connect_ms, max_connections: undici fixes them at creation);
 * - restart: only a new process applies it (listeners, workers, limits the listener was built
 *   with, logging, the cache store); the running process keeps the old value and says so.
 *   A tcp or udp listener's pool and its tcp/udp settings are live (the next connection or
 *   session uses them; established ones keep theirs); its host, port and protocol need a restart.
 */
import type { Config, PoolConfig, RouteConfig, SidecarConfig } from '../config/schema.js'

export type ChangeClass = 'live' | 'rebuild' | 'restart'

export interface Change {
  /** Where in the config, e.g. `pools.web.members[http://10.0.0.1:8080].weight`. */
  path: string
  class: ChangeClass
  detail: string
}

/** Pool settings undici fixes when it creates an origin's connection pool. */
const REBUILD_POOL_KEYS = ['tls.verify', 'timeouts.connect_ms', 'max_connections', 'http2']
/** Limits read per request or at shutdown; every other limit is given to the listener at startup. */
const LIVE_LIMITS = new Set(['max_body_bytes', 'shutdown_timeout_ms'])

/** Every difference between the running config and the next one, classified. */
export function planReload(old: Config, next: Config): Change[] {
  const out: Change[] = []
  const restart = (path: string, a: unknown, b: unknown): void => {
    out.push({ path, class: 'restart', detail: `${show(a)} -> ${show(b)}: needs a restart (the running process keeps ${show(a)})` })
  }
  if (old.workers !== next.workers) restart('workers', old.workers, next.workers)
  out.push(...planListeners(old.listen, next.listen, restart))
  for (const d of leafDiff({ ...old.admin, token: undefined }, { ...next.admin, token: undefined }, 'admin')) restart(d.path, d.from, d.to)
  if (old.admin.token !== next.admin.token) out.push({ path: 'admin.token', class: 'live', detail: 'changed (mutating admin calls use the new token)' })
  for (const d of leafDiff(old.limits, next.limits, 'limits')) {
    if (LIVE_LIMITS.has(d.path.slice('limits.'.length))) out.push({ path: d.path, class: 'live', detail: `${show(d.from)} -> ${show(d.to)}` })
    else restart(d.path, d.from, d.to)
  }
  for (const d of leafDiff(old.logging, next.logging, 'logging')) restart(d.path, d.from, d.to)
  for (const d of leafDiff(old.cache, next.cache, 'cache')) restart(d.path, d.from, d.to)
  // The forward proxy's rules are rebuilt with the runtime (block list files re-read): live.
  for (const d of leafDiff(old.forward, next.forward, 'forward')) out.push({ path: d.path, class: 'live', detail: `${show(d.from)} -> ${show(d.to)}` })
  if (!same(old.trusted_proxies, next.trusted_proxies)) out.push({ path: 'trusted_proxies', class: 'live', detail: `${show(old.trusted_proxies)} -> ${show(next.trusted_proxies)}` })
  // Access rules are compiled into the next runtime (security/firewall.ts); the rate-limit Redis
  // connection is opened once, so its URL and timeout need a restart.
  for (const d of leafDiff(old.access, next.access, 'access')) out.push({ path: d.path, class: 'live', detail: `${show(d.from)} -> ${show(d.to)}` })
  for (const d of leafDiff(old.firewall, next.firewall, 'firewall')) {
    if (d.path.startsWith('firewall.redis')) restart(d.path, d.from, d.to)
    else out.push({ path: d.path, class: 'live', detail: `${show(d.from)} -> ${show(d.to)}` })
  }
  out.push(...planPools(old.pools, next.pools))
  out.push(...planRoutes(old.routes, next.routes))
  out.push(...planSidecars(old.sidecars, next.sidecars))
  return out.map(redacted)
}

/**
 * Listeners are bound at start: a change needs a restart, except a TLS listener's certificate
 * list, which is read again on every reload (and when the files change) without dropping a
 * connection. One listener each side is diffed as `listen.*`, as it is usually written.
 */
function planListeners(old: Config['listen'], next: Config['listen'], restart: (path: string, a: unknown, b: unknown) => void): Change[] {
  const out: Change[] = []
  if (old.length !== next.length) {
    restart('listen', `${old.length} listener(s)`, `${next.length} listener(s)`)
    return out
  }
  old.forEach((l, i) => {
    const n = next[i]
    const base = old.length === 1 ? 'listen' : `listen[${i}]`
    const l4 = isL4Pair(l, n)
    const strip = (x: typeof l): unknown => ({ ...x, tls: x.tls === undefined ? undefined : { ...x.tls, certificates: undefined }, ...(l4 ? { pool: undefined, tcp: undefined, udp: undefined } : {}) })
    for (const d of leafDiff(strip(l), strip(n), base)) restart(d.path, d.from, d.to)
    if (l4) {
      const live = (x: typeof l): unknown => ({ pool: x.pool, tcp: x.tcp, udp: x.udp })
      for (const d of leafDiff(live(l), live(n), base)) out.push({ path: d.path, class: 'live', detail: `${show(d.from)} -> ${show(d.to)} (new ${l.protocol === 'tcp' ? 'connections' : 'sessions'}; open ones keep theirs)` })
    }
    if (l.tls !== undefined && n.tls !== undefined && !same(l.tls.certificates, n.tls.certificates)) {
      out.push({ path: `${base}.tls.certificates`, class: 'live', detail: 'changed (new connections get the new certificates)' })
    }
  })
  return out
}

function planPools(old: Record<string, PoolConfig>, next: Record<string, PoolConfig>): Change[] {
  const out: Change[] = []
  for (const name of Object.keys(old)) if (!(name in next)) out.push({ path: `pools.${name}`, class: 'live', detail: 'removed' })
  for (const [name, cfg] of Object.entries(next)) {
    const was = old[name]
    if (was === undefined) {
      out.push({ path: `pools.${name}`, class: 'live', detail: `added (${cfg.members.length} member${cfg.members.length === 1 ? '' : 's'})` })
      continue
    }
    const base = `pools.${name}`
    const oldUrls = new Map(was.members.map((m) => [m.url, m]))
    const newUrls = new Map(cfg.members.map((m) => [m.url, m]))
    for (const url of oldUrls.keys()) if (!newUrls.has(url)) out.push({ path: `${base}.members[${url}]`, class: 'live', detail: 'removed (its requests in flight finish)' })
    for (const [url, m] of newUrls) {
      const prev = oldUrls.get(url)
      if (prev === undefined) out.push({ path: `${base}.members[${url}]`, class: 'live', detail: 'added' })
      else for (const d of leafDiff(prev, m, `${base}.members[${url}]`)) out.push({ path: d.path, class: 'live', detail: `${show(d.from)} -> ${show(d.to)}` })
    }
    if (!same(was.members.map((m) => m.url), cfg.members.map((m) => m.url)) && [...newUrls.keys()].every((u) => oldUrls.has(u)) && newUrls.size === oldUrls.size) {
      out.push({ path: `${base}.members`, class: 'live', detail: 'order changed' })
    }
    // Members that stay keep their origin's connection pool: those are the ones rebuilt.
    // tcp:// and udp:// members have no undici pool: nothing of theirs is rebuilt.
    const kept = cfg.members.filter((m) => oldUrls.has(m.url) && /^https?:/i.test(m.url)).map((m) => originOf(m.url))
    for (const d of leafDiff({ ...was, members: undefined }, { ...cfg, members: undefined }, base)) {
      const key = d.path.slice(base.length + 1)
      if (REBUILD_POOL_KEYS.includes(key) && kept.length > 0) {
        out.push({ path: d.path, class: 'rebuild', detail: `${show(d.from)} -> ${show(d.to)}: connection pool rebuilt for ${[...new Set(kept)].join(', ')}; the old one finishes its requests` })
      } else {
        out.push({ path: d.path, class: 'live', detail: `${show(d.from)} -> ${show(d.to)}` })
      }
    }
  }
  return out
}

function planRoutes(old: readonly RouteConfig[], next: readonly RouteConfig[]): Change[] {
  const out: Change[] = []
  const oldBy = new Map(old.map((r) => [r.name, r]))
  const newBy = new Map(next.map((r) => [r.name, r]))
  for (const name of oldBy.keys()) if (!newBy.has(name)) out.push({ path: `routes[${name}]`, class: 'live', detail: 'removed' })
  for (const [name, r] of newBy) {
    const prev = oldBy.get(name)
    if (prev === undefined) out.push({ path: `routes[${name}]`, class: 'live', detail: `added (${r.pool !== undefined ? `pool ${r.pool}` : `split ${r.split?.name ?? ''}`})` })
    else for (const d of leafDiff(prev, r, `routes[${name}]`)) out.push({ path: d.path, class: 'live', detail: `${show(d.from)} -> ${show(d.to)}` })
  }
  const kept = (list: readonly RouteConfig[], other: Map<string, RouteConfig>): string[] => list.map((r) => r.name).filter((n) => other.has(n))
  if (!same(kept(old, newBy), kept(next, oldBy))) out.push({ path: 'routes', class: 'live', detail: 'order changed (first match in file order wins)' })
  return out
}

function planSidecars(old: readonly SidecarConfig[], next: readonly SidecarConfig[]): Change[] {
  const out: Change[] = []
  const on = (list: readonly SidecarConfig[]): Map<string, SidecarConfig> => new Map(list.filter((s) => s.enabled).map((s) => [s.name, s]))
  const was = on(old)
  const now = on(next)
  for (const name of was.keys()) if (!now.has(name)) out.push({ path: `sidecars[${name}]`, class: 'live', detail: 'stopped (removed or disabled)' })
  for (const [name, s] of now) {
    const prev = was.get(name)
    if (prev === undefined) out.push({ path: `sidecars[${name}]`, class: 'live', detail: 'started' })
    else if (!same(prev, s)) out.push({ path: `sidecars[${name}]`, class: 'live', detail: `restarted (${leafDiff(prev, s, '').map((d) => d.path.replace(/^\./, '')).join(', ')} changed)` })
  }
  return out
}

/**
 * The config a process runs after a reload: `next`, except the restart-class settings, which
 * keep the values the process has (so the next plan reports them again until a restart).
 */
export function carryRestartSettings(running: Config, next: Config): Config {
  const limits = { ...running.limits } as Record<string, unknown>
  for (const k of LIVE_LIMITS) limits[k] = (next.limits as Record<string, unknown>)[k]
  return {
    ...next,
    workers: running.workers,
    // Certificates are live: the listeners keep their bindings and read next's certificate list.
    listen: running.listen.map((l, i) => {
      const n = next.listen[i]
      if (n !== undefined && isL4Pair(l, n)) return { ...l, pool: n.pool, tcp: n.tcp, udp: n.udp }
      return l.tls === undefined || n?.tls === undefined ? l : { ...l, tls: { ...l.tls, certificates: n.tls.certificates } }
    }),
    admin: { ...running.admin, token: next.admin.token },
    limits: limits as Config['limits'],
    logging: running.logging,
    cache: running.cache
  }
}

/** Both sides are the same tcp or udp listener (same protocol): its pool and settings are live. */
function isL4Pair(a: Config['listen'][number], b: Config['listen'][number]): boolean {
  return a.protocol === b.protocol && (a.protocol === 'tcp' || a.protocol === 'udp') && a.host === b.host && a.port === b.port
}

/** Counts of changes by class, for log lines and answers. */
export function summarize(changes: readonly Change[]): Record<ChangeClass, number> {
  const n: Record<ChangeClass, number> = { live: 0, rebuild: 0, restart: 0 }
  for (const c of changes) n[c.class]++
  return n
}

interface Leaf { path: string; from: unknown; to: unknown }

/** Leaf differences between two JSON values; arrays and scalars are compared whole. */
function leafDiff(a: unknown, b: unknown, path: string): Leaf[] {
  if (isObject(a) && isObject(b)) {
    const out: Leaf[] = []
    const keys = new Set([...Object.keys(a), ...Object.keys(b)])
    for (const k of keys) out.push(...leafDiff(a[k], b[k], path === '' ? k : `${path}.${k}`))
    return out
  }
  return same(a, b) ? [] : [{ path, from: a, to: b }]
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/**
 * A value as a change's detail shows it. Details reach logs, the reload answer and the
 * unauthenticated status page: a URL's credentials (a Redis password) are never shown.
 */
function show(v: unknown): string {
  return v === undefined ? '(unset)' : JSON.stringify(v, (_k, x: unknown) => typeof x === 'string' ? withoutCredentials(x) : x)
}

/** `redis://:secret@host` -> `redis://***@host`. */
export function withoutCredentials(s: string): string {
  return s.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s"]*@/gi, '$1***@')
}

/**
 * Leaves whose values are secrets by nature (a header a route requires may be a shared key;
 * access rules hold JWT secrets, password hashes and required header values).
 */
const SECRET_PATH = /(^forward\.users$|\.headers(\.|\[|$)|\.env(\.|\[|$)|(^|\.)access(\.|\[|$)|(token|password|secret)$)/i

function redacted(c: Change): Change {
  const path = withoutCredentials(c.path)
  if (path !== c.path) c = { ...c, path }
  // admin.token's detail never shows the value.
  if (c.path === 'admin.token' || !SECRET_PATH.test(c.path)) return c
  return { ...c, detail: c.class === 'restart' ? 'changed (value not shown): needs a restart' : 'changed (value not shown)' }
}

function originOf(url: string): string {
  try { return new URL(url).origin } catch { return url }
}
