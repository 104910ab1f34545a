/**
 * The scenarios and the shape of what a run records (the JSON file is this, so two runs can be
 * compared), and the summary of the repetitions: medians and spreads, ratios to the anchor.
 */
import type { HitSample, LoadResult } from './load.js'

export type Size = 'small' | 'big'

/**
 * How the client speaks to the target: plain HTTP/1.1 (absent), HTTP/1.1 keep-alive over TLS
 * (autocannon, ALPN `http/1.1`) or HTTP/2 over TLS (h2load, ALPN `h2`). The TLS rows go to the
 * `switchyard` process's second listener.
 */
export type Transport = 'https' | 'h2'

/** Which process answers: the upstreams themselves, a Switchyard process or nginx. */
export type TargetName = 'upstreams' | 'switchyard' | 'switchyard-redis' | 'switchyard-redis-far' | 'switchyard-workers' | 'nginx'

export interface ScenarioDef {
  id: string
  size: Size
  label: string
  target: TargetName
  /** Path prefix routed by the target: /u/ uncached, /c/ cached, /z/ cached and compressed (text bodies). */
  prefix: '' | '/u/' | '/c/' | '/z/'
  cached: boolean
  /** Request fields the load generator sends (Accept-Encoding for the compressed rows). */
  headers?: Record<string, string>
  /** Absent: plain HTTP/1.1. */
  transport?: Transport
  /** For the TLS rows: the id of the plain HTTP/1.1 row they are compared with, rep by rep. */
  versus?: string
}

interface Kind { key: string; label: string; target: TargetName; prefix: ScenarioDef['prefix']; cached: boolean; headers?: Record<string, string>; sizes?: readonly Size[]; transport?: Transport; versus?: string }

const KINDS: readonly Kind[] = [
  { key: 'direct', label: 'direct upstream (anchor)', target: 'upstreams', prefix: '', cached: false },
  { key: 'switchyard', label: 'switchyard uncached', target: 'switchyard', prefix: '/u/', cached: false },
  // The same uncached route through the TLS listener: HTTP/1.1 keep-alive (autocannon) and HTTP/2
  // (h2load, the same number of requests in flight). Compared with the row above, rep by rep.
  { key: 'switchyard-https', label: 'switchyard uncached, HTTPS (HTTP/1.1 keep-alive)', target: 'switchyard', prefix: '/u/', cached: false, transport: 'https', versus: 'switchyard', sizes: ['small'] },
  { key: 'switchyard-h2', label: 'switchyard uncached, HTTP/2 over TLS (h2load)', target: 'switchyard', prefix: '/u/', cached: false, transport: 'h2', versus: 'switchyard', sizes: ['small'] },
  { key: 'switchyard-memory-hit', label: 'switchyard cache hit, memory', target: 'switchyard', prefix: '/c/', cached: true },
  { key: 'switchyard-redis-hit', label: 'switchyard cache hit, redis', target: 'switchyard-redis', prefix: '/c/', cached: true },
  { key: 'switchyard-redis-far-hit', label: 'switchyard cache hit, redis, no near cache', target: 'switchyard-redis-far', prefix: '/c/', cached: true },
  // The same 64 KiB as text on a route with compress: a client that takes identity, and one that
  // takes gzip (served from the stored gzip copy: a hit never compresses). /small is below min_bytes.
  { key: 'switchyard-memory-text-hit', label: 'switchyard cache hit, memory, compress route, identity', target: 'switchyard', prefix: '/z/', cached: true, sizes: ['big'] },
  { key: 'switchyard-memory-gzip-hit', label: 'switchyard cache hit, memory, compress route, gzip', target: 'switchyard', prefix: '/z/', cached: true, headers: { 'accept-encoding': 'gzip' }, sizes: ['big'] },
  { key: 'switchyard-workers2', label: 'switchyard workers:2 uncached', target: 'switchyard-workers', prefix: '/u/', cached: false },
  { key: 'switchyard-workers2-memory-hit', label: 'switchyard workers:2 cache hit, memory', target: 'switchyard-workers', prefix: '/c/', cached: true },
  { key: 'nginx', label: 'nginx (keepalive upstream)', target: 'nginx', prefix: '/u/', cached: false },
  { key: 'nginx-cache-hit', label: 'nginx proxy_cache hit', target: 'nginx', prefix: '/c/', cached: true }
]

/** Every scenario, in table order: the /small group, then the /big group. */
export function allScenarios(): ScenarioDef[] {
  return (['small', 'big'] as const).flatMap((size) => KINDS.filter((k) => k.sizes === undefined || k.sizes.includes(size)).map((k) => ({
    id: `${size}/${k.key}`,
    size,
    label: `${k.label} /${size}`,
    target: k.target,
    prefix: k.prefix,
    cached: k.cached,
    ...(k.headers === undefined ? {} : { headers: k.headers }),
    ...(k.transport === undefined ? {} : { transport: k.transport }),
    ...(k.versus === undefined ? {} : { versus: `${size}/${k.versus}` })
  })))
}

export interface ProcessCpu {
  /** CPU time during the run, µs, and per completed request. */
  us: number
  usPerReq: number
}

export interface RepRecord {
  rep: number
  /** Position of this run inside its repetition (the order rotates every repetition). */
  order: number
  startedAt: string
  load: LoadResult
  cpu: { proxy?: ProcessCpu; upstreams: ProcessCpu; redis?: ProcessCpu; loadgen: ProcessCpu }
  /** Sampled after the run, for cached scenarios. */
  hits?: HitSample
  /** req/s ÷ the direct anchor's req/s of the same size in the same repetition. */
  ratio?: number
  /** p99 − the direct anchor's p99 of the same size in the same repetition, ms. */
  addedP99Ms?: number
  /** Proxy CPU µs/req and req/s ÷ nginx's comparable row (uncached: nginx, cached: proxy_cache) of the same size and repetition. */
  nginxCpu?: number
  nginxRps?: number
  /** TLS rows: proxy CPU µs/req and req/s ÷ those of the `versus` row in the same repetition. */
  versusCpu?: number
  versusRps?: number
}

export interface Spread { median: number; min: number; max: number }

export interface ScenarioSummary {
  rps: Spread
  ratio?: Spread
  proxyCpuUsPerReq?: Spread
  upstreamCpuUsPerReq: Spread
  redisCpuUsPerReq?: Spread
  loadgenCpuUsPerReq: Spread
  p50Ms: Spread
  p99Ms: Spread
  addedP99Ms?: Spread
  /** Connection errors + timeouts + non-2xx answers over all measured runs. */
  errors: number
  non2xx: number
  hitRatio?: number
  hitsSampled?: number
  /** TLS rows: proxy CPU µs/req and req/s as multiples of the plain HTTP/1.1 row's (`versus`). */
  versus?: { id: string; cpu?: Spread; rps?: Spread }
  /** Proxy CPU µs/req and req/s as multiples of nginx's comparable row (`id`). */
  nginx?: { id: string; cpu?: Spread; rps?: Spread }
}

export interface ScenarioResult extends ScenarioDef {
  status: 'ok' | 'skipped' | 'failed'
  note?: string
  warmup?: LoadResult
  warmupHits?: HitSample
  reps: RepRecord[]
  summary?: ScenarioSummary
}

export interface ProcessRecord {
  name: string
  role: string
  pids: number[]
  /** VmHWM summed over the process tree, bytes, read just before stopping it. */
  peakRssBytes?: number
  peakRssByPid: Record<string, number>
}

export interface RunOptions {
  quick: boolean
  reps: number
  durationS: number
  warmupS: number
  connections: number
  delayMs: number
  /** Plain HTTP/1.1 rows: which load generator (absent: wrk when installed, else autocannon). */
  loadgen?: 'wrk' | 'autocannon'
  /** --soak: seconds of load while RSS and heap are printed (no table). */
  soakS?: number
  out: string
  compare?: string
  /** Regular expression on scenario ids. */
  only?: string
  /** HTTP/2 row: streams per h2load connection; connections = connections ÷ this (same requests in flight). */
  h2Streams?: number
}

export interface RunRecord {
  version: 1
  startedAt: string
  finishedAt: string
  wallS: number
  node: string
  platform: string
  cpu: { model: string; cpus: number }
  clkTck: number
  options: RunOptions
  notes: string[]
  /** The generated switchyard YAML and nginx.conf, by process name. */
  configs: Record<string, string>
  scenarios: ScenarioResult[]
  processes: ProcessRecord[]
  /** Every pid the harness started or saw under its children, and whether any survived. */
  pids: Array<{ name: string; role: string; pid: number }>
  leftoverPids: number[]
  /** How long each process took to exit after SIGTERM, ms. */
  stopMs: Record<string, number>
  interrupted: boolean
}

export function spread(values: readonly number[]): Spread {
  if (values.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN }
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  const median = s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
  return { median, min: s[0], max: s[s.length - 1] }
}

function defined(values: ReadonlyArray<number | undefined>): number[] {
  return values.filter((v): v is number => v !== undefined && Number.isFinite(v))
}

/**
 * Fills each rep's ratio and added p99 against the direct anchor of the same size and the same
 * repetition (machine speed and drift cancel out), then summarises every scenario that ran.
 */
export function summarise(results: ScenarioResult[]): void {
  for (const r of results) {
    if (r.status !== 'ok' || r.reps.length === 0) continue
    const anchor = results.find((a) => a.size === r.size && a.target === 'upstreams' && a.status === 'ok')
    for (const rep of r.reps) {
      const a = anchor?.reps.find((x) => x.rep === rep.rep)
      if (a !== undefined && a.load.rps > 0) {
        rep.ratio = rep.load.rps / a.load.rps
        if (r.target !== 'upstreams') rep.addedP99Ms = rep.load.latencyMs.p99 - a.load.latencyMs.p99
      }
    }
    const samples = [r.warmupHits, ...r.reps.map((x) => x.hits)].filter((h): h is HitSample => h !== undefined)
    const sampled = samples.reduce((n, h) => n + h.sampled, 0)
    const proxyCpu = defined(r.reps.map((x) => x.cpu.proxy?.usPerReq))
    const redisCpu = defined(r.reps.map((x) => x.cpu.redis?.usPerReq))
    const added = defined(r.reps.map((x) => x.addedP99Ms))
    const versus = r.versus === undefined ? undefined : results.find((a) => a.id === r.versus && a.status === 'ok')
    for (const rep of r.reps) {
      const v = versus?.reps.find((x) => x.rep === rep.rep)
      if (v === undefined) continue
      const [mine, theirs] = [rep.cpu.proxy?.usPerReq, v.cpu.proxy?.usPerReq]
      if (mine !== undefined && theirs !== undefined && theirs > 0) rep.versusCpu = mine / theirs
      if (v.load.rps > 0) rep.versusRps = rep.load.rps / v.load.rps
    }
    // nginx beside every other row: uncached rows against nginx's proxy, cached ones against its
    // proxy_cache (the goals are these CPU ratios). TLS rows have no nginx peer here.
    const nginxId = `${r.size}/${r.cached ? 'nginx-cache-hit' : 'nginx'}`
    const ngx = r.target === 'upstreams' || r.target === 'nginx' || r.transport !== undefined ? undefined : results.find((a) => a.id === nginxId && a.status === 'ok')
    for (const rep of r.reps) {
      const v = ngx?.reps.find((x) => x.rep === rep.rep)
      if (v === undefined) continue
      const [mine, theirs] = [rep.cpu.proxy?.usPerReq, v.cpu.proxy?.usPerReq]
      if (mine !== undefined && theirs !== undefined && theirs > 0) rep.nginxCpu = mine / theirs
      if (v.load.rps > 0) rep.nginxRps = rep.load.rps / v.load.rps
    }
    const nginxCpu = defined(r.reps.map((x) => x.nginxCpu))
    const nginxRps = defined(r.reps.map((x) => x.nginxRps))
    const versusCpu = defined(r.reps.map((x) => x.versusCpu))
    const versusRps = defined(r.reps.map((x) => x.versusRps))
    const ratios = defined(r.reps.map((x) => x.ratio))
    r.summary = {
      rps: spread(r.reps.map((x) => x.load.rps)),
      ...(ratios.length > 0 ? { ratio: spread(ratios) } : {}),
      ...(proxyCpu.length > 0 ? { proxyCpuUsPerReq: spread(proxyCpu) } : {}),
      upstreamCpuUsPerReq: spread(r.reps.map((x) => x.cpu.upstreams.usPerReq)),
      ...(redisCpu.length > 0 ? { redisCpuUsPerReq: spread(redisCpu) } : {}),
      loadgenCpuUsPerReq: spread(r.reps.map((x) => x.cpu.loadgen.usPerReq)),
      p50Ms: spread(r.reps.map((x) => x.load.latencyMs.p50)),
      p99Ms: spread(r.reps.map((x) => x.load.latencyMs.p99)),
      ...(added.length > 0 ? { addedP99Ms: spread(added) } : {}),
      errors: r.reps.reduce((n, x) => n + x.load.errors + x.load.non2xx, 0),
      non2xx: r.reps.reduce((n, x) => n + x.load.non2xx, 0),
      ...(ngx === undefined ? {} : { nginx: { id: nginxId, ...(nginxCpu.length > 0 ? { cpu: spread(nginxCpu) } : {}), ...(nginxRps.length > 0 ? { rps: spread(nginxRps) } : {}) } }),
      ...(versus === undefined || r.versus === undefined ? {} : { versus: { id: r.versus, ...(versusCpu.length > 0 ? { cpu: spread(versusCpu) } : {}), ...(versusRps.length > 0 ? { rps: spread(versusRps) } : {}) } }),
      ...(r.cached ? { hitRatio: sampled > 0 ? samples.reduce((n, h) => n + h.hits, 0) / sampled : 0, hitsSampled: sampled } : {})
    }
  }
}
