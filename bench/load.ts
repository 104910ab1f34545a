/**
 * The load generator: autocannon, in this process, at a fixed number of connections for a fixed
 * time, over plain HTTP/1.1 or HTTPS (HTTP/1.1 keep-alive). Latency is also recorded here per
 * response at full (sub-millisecond) resolution, because autocannon's own histogram counts whole
 * milliseconds, too coarse on loopback. HTTP/2 is h2load's (bench/h2load.ts): autocannon has none.
 */
import autocannon from 'autocannon'
import { Agent, request } from 'node:http'
import type { TLSSocket } from 'node:tls'

export interface LoadOptions {
  title: string
  /** Several URLs share the connections round-robin (the direct anchor hits both upstreams). */
  urls: string[]
  connections: number
  durationS: number
  /** Request fields sent with every request. */
  headers?: Record<string, string>
  /** https:// URLs: the ALPN protocols offered (autocannon never verifies the certificate). */
  alpn?: string[]
}

export interface LoadResult {
  /** Which client made the load: autocannon (in process) or h2load (a child process). */
  loadgen?: 'autocannon' | 'h2load' | 'wrk'
  /**
   * Over TLS, the protocol ALPN chose, as the client saw it (`http/1.1`, `h2`; `none` when ALPN
   * picked nothing, which is HTTP/1.1). Absent over plain HTTP.
   */
  protocol?: string
  /** h2load: client connections and streams per connection (requests in flight = their product). */
  clients?: number
  streams?: number
  /** Completed requests (any status). */
  requests: number
  durationS: number
  rps: number
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number }
  /** autocannon's own percentiles (whole milliseconds), kept for reference (autocannon runs only). */
  autocannonLatencyMs?: { p50: number; p99: number }
  /** Connection errors, including timeouts. */
  errors: number
  timeouts: number
  non2xx: number
  statusCodes: Record<string, number>
  /** CPU time of the load generator (this process) during the run, in µs. */
  loadgenCpuUs: number
}

let current: autocannon.Instance | undefined

/** Stops the run in progress (SIGINT); its promise still resolves with what was measured. */
export function stopLoad(): void {
  current?.stop()
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}

/** p50/p90/p99/max/mean of latencies sorted ascending (ms). */
export function latencySummary(sorted: Float64Array): LoadResult['latencyMs'] {
  const n = sorted.length
  let sum = 0
  for (let i = 0; i < n; i++) sum += sorted[i]
  return {
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: n > 0 ? sorted[n - 1] : 0,
    mean: n > 0 ? sum / n : 0
  }
}

export function runLoad(opts: LoadOptions): Promise<LoadResult> {
  let lat = new Float64Array(1 << 16)
  let n = 0
  // Every connection's ALPN result, read at its first response.
  const protocols = new Set<string>()
  const seen = new WeakSet<object>()
  const secure = opts.urls.some((u) => u.startsWith('https:'))
  const cpu0 = process.cpuUsage()
  return new Promise((resolve, reject) => {
    const instance = autocannon({
      title: opts.title,
      url: opts.urls.length === 1 ? opts.urls[0] : opts.urls,
      connections: opts.connections,
      duration: opts.durationS,
      ...(opts.headers === undefined ? {} : { headers: opts.headers }),
      ...(opts.alpn === undefined ? {} : { tlsOptions: { ALPNProtocols: opts.alpn } }),
      timeout: 10,
      // autocannon stops on a sample tick: the default 1 s tick would round every run up to
      // whole seconds (1.5 s ran 2 s); 100 ms keeps durations as asked.
      sampleInt: 100
    }, (err, r) => {
      current = undefined
      if (err !== null) return reject(err)
      const cpu = process.cpuUsage(cpu0)
      const sorted = lat.slice(0, n).sort()
      const requests = r.requests.total
      const statusCodes: Record<string, number> = {}
      for (const [code, { count }] of Object.entries(r.statusCodeStats)) statusCodes[code] = Number(count)
      resolve({
        loadgen: 'autocannon',
        ...(protocols.size === 0 ? {} : { protocol: [...protocols].sort().join(', ') }),
        requests,
        durationS: r.duration,
        rps: r.duration > 0 ? requests / r.duration : 0,
        latencyMs: latencySummary(sorted),
        autocannonLatencyMs: { p50: r.latency.p50, p99: r.latency.p99 },
        errors: r.errors,
        timeouts: r.timeouts,
        non2xx: r.non2xx,
        statusCodes,
        loadgenCpuUs: cpu.user + cpu.system
      })
    })
    instance.on('response', (client, _status, _bytes, ms) => {
      // What ALPN chose for each connection (autocannon's Client keeps its socket as `conn`).
      if (secure && !seen.has(client as object)) {
        seen.add(client as object)
        const alpn = (client as { conn?: TLSSocket }).conn?.alpnProtocol
        protocols.add(typeof alpn === 'string' && alpn !== '' ? alpn : 'none')
      }
      if (n === lat.length) {
        const bigger = new Float64Array(lat.length * 2)
        bigger.set(lat)
        lat = bigger
      }
      lat[n++] = ms
    })
    current = instance
  })
}

export interface HitSample {
  sampled: number
  hits: number
  /** Non-2xx answers among the samples. */
  failed: number
  /** The cache headers of the last sample, to see what the proxy said (and its coding, when compressed). */
  lastHeaders: { 'x-cache'?: string; 'cache-status'?: string; 'content-encoding'?: string }
}

const sampleAgent = new Agent({ keepAlive: true, maxSockets: 1 })

/**
 * Sends `n` GETs one after the other and counts the answers marked as cache hits:
 * `X-Cache: HIT` (Switchyard, nginx's $upstream_cache_status) or a `Cache-Status` whose
 * first entry says `hit` (RFC 9211).
 */
export async function sampleHits(url: string, n: number, requestHeaders: Record<string, string> = {}): Promise<HitSample> {
  const out: HitSample = { sampled: 0, hits: 0, failed: 0, lastHeaders: {} }
  for (let i = 0; i < n; i++) {
    const { status, headers } = await new Promise<{ status: number; headers: Record<string, string | string[] | undefined> }>((resolve, reject) => {
      const req = request(url, { agent: sampleAgent, timeout: 5000, headers: requestHeaders }, (res) => {
        res.resume()
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }))
      })
      req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)))
      req.on('error', reject)
      req.end()
    })
    const xcache = headerText(headers['x-cache'])
    const cacheStatus = headerText(headers['cache-status'])
    const coding = headerText(headers['content-encoding'])
    out.sampled++
    if (status < 200 || status > 299) out.failed++
    if (/^hit\b/i.test(xcache ?? '') || /^[^;,]*;\s*hit\b/i.test(cacheStatus ?? '')) out.hits++
    out.lastHeaders = { ...(xcache === undefined ? {} : { 'x-cache': xcache }), ...(cacheStatus === undefined ? {} : { 'cache-status': cacheStatus }), ...(coding === undefined ? {} : { 'content-encoding': coding }) }
  }
  return out
}

function headerText(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v
}

/** Closes the sampling client's idle connection so the process can exit. */
export function closeSampler(): void {
  sampleAgent.destroy()
}
