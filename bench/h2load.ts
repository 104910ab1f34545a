/**
 * The HTTP/2 load generator: h2load (nghttp2-client), a child process, since autocannon speaks
 * only HTTP/1.1. Its results are turned into the same LoadResult as autocannon's: requests done
 * in the measured duration, latency percentiles from its per-request log (microseconds), status
 * codes, and its own CPU time, so the tables read the same. h2load is written in C: it needs less
 * CPU per request than autocannon, which leaves the machine more for the proxy and the upstreams;
 * the proxy's CPU per request is the figure that compares with the autocannon rows.
 */
import { readFileSync, rmSync } from 'node:fs'
import { latencySummary, type LoadResult } from './load.js'
import type { Processes, Tracked } from './processes.js'
import { clkTck } from './procfs.js'
import { haveCommand } from './services.js'
import { runLoadTool } from './load-tool.js'

export const H2LOAD_MISSING = 'h2load not installed: apt-get install nghttp2-client to add the HTTP/2 row'

export function haveH2load(): boolean {
  return haveCommand('h2load')
}

export interface H2loadOptions {
  title: string
  url: string
  /** Client connections (-c) and concurrent streams per connection (-m). */
  clients: number
  streams: number
  durationS: number
  headers?: Record<string, string>
  /** Where h2load writes one line per request (deleted once read). */
  logFile: string
}

/** What h2load prints at the end of a run (its stdout), the parts we use. */
export interface H2loadSummary {
  /** "finished in 5.00s": the measured duration. */
  durationS: number
  /** "Application protocol: h2" (the last one seen). */
  protocol?: string
  done: number
  succeeded: number
  failed: number
  errored: number
  timeout: number
}

/** The line the wrapper shell adds after h2load exits: its own /proc/<pid>/stat. */
const STAT_PREFIX = 'h2load-wrapper-stat: '

/** Parses h2load's summary; throws when the run did not get as far as its summary. */
export function parseH2loadOutput(out: string): H2loadSummary {
  const finished = /^finished in ([\d.]+)(ms|s),/m.exec(out)
  const req = /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m.exec(out)
  if (finished === null || req === null) throw new Error(`h2load printed no summary; output: ${out.trim().split('\n').slice(-8).join(' | ')}`)
  const protocols = [...out.matchAll(/^Application protocol: (\S+)/gm)].map((m) => m[1])
  const duration = Number(finished[1]) / (finished[2] === 'ms' ? 1000 : 1)
  return {
    durationS: duration,
    ...(protocols.length > 0 ? { protocol: [...new Set(protocols)].sort().join(', ') } : {}),
    done: Number(req[3]),
    succeeded: Number(req[4]),
    failed: Number(req[5]),
    errored: Number(req[6]),
    timeout: Number(req[7])
  }
}

/** The log: `start µs since epoch <TAB> status (-1 = failed stream) <TAB> µs to the end of the response`. */
export function parseH2loadLog(text: string): { latenciesMs: Float64Array; statusCodes: Record<string, number> } {
  const lines = text.split('\n')
  const lat = new Float64Array(lines.length)
  let n = 0
  const statusCodes: Record<string, number> = {}
  for (const line of lines) {
    if (line === '') continue
    const [, status, us] = line.split('\t')
    if (status === undefined || us === undefined) continue
    if (status !== '-1') {
      statusCodes[status] = (statusCodes[status] ?? 0) + 1
      lat[n++] = Number(us) / 1000
    }
  }
  return { latenciesMs: lat.slice(0, n).sort(), statusCodes }
}

/** A duration for h2load: an integer and a unit. */
function h2duration(s: number): string {
  return `${Math.max(1, Math.round(s * 1000))}ms`
}

let current: Tracked | undefined

/** Stops the h2load run in progress (its promise then rejects: h2load prints no summary). */
export function stopH2load(): void {
  if (current !== undefined) {
    try { process.kill(-current.pid, 'SIGTERM') } catch { /* already gone */ }
  }
}

/**
 * Runs `h2load -c clients -m streams -D duration --log-file ... URL`. The certificate is not
 * verified (h2load never does). It runs under `sh`, which prints its own /proc stat after
 * h2load exits: cutime + cstime there is h2load's CPU time (a reaped child's, exact).
 */
export async function runH2load(procs: Processes, opts: H2loadOptions): Promise<LoadResult> {
  const args = [
    '-c', String(opts.clients),
    '-m', String(opts.streams),
    '-t', '1',
    '-D', h2duration(opts.durationS),
    '--log-file', opts.logFile,
    ...Object.entries(opts.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}: ${v}`]),
    opts.url
  ]
  const out = await runLoadTool(procs, args, { tool: 'h2load', title: opts.title, durationS: opts.durationS, statPrefix: STAT_PREFIX, track: (p) => { current = p } })
  const summary = parseH2loadOutput(out)
  let log
  try {
    log = parseH2loadLog(readFileSync(opts.logFile, 'utf8'))
  } finally {
    rmSync(opts.logFile, { force: true })
  }
  const sorted = log.latenciesMs
  let non2xx = 0
  for (const [code, count] of Object.entries(log.statusCodes)) if (!code.startsWith('2')) non2xx += count
  const statLine = out.split('\n').find((l) => l.startsWith(STAT_PREFIX))
  let loadgenCpuUs = Number.NaN
  if (statLine !== undefined) {
    const stat = statLine.slice(STAT_PREFIX.length)
    // Fields after the command name: f[n - 3] is field n; cutime is 16, cstime 17 (proc(5)).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    loadgenCpuUs = ((Number(f[13]) + Number(f[14])) * 1e6) / clkTck()
  }
  return {
    loadgen: 'h2load',
    ...(summary.protocol === undefined ? {} : { protocol: summary.protocol }),
    clients: opts.clients,
    streams: opts.streams,
    requests: summary.done,
    durationS: summary.durationS,
    rps: summary.durationS > 0 ? summary.done / summary.durationS : 0,
    latencyMs: latencySummary(sorted),
    // h2load's "failed" counts non-2xx answers too (its "succeeded" means 2xx): what remains are
    // streams that ended without an answer (errored, timed out).
    errors: Math.max(0, summary.failed - non2xx),
    timeouts: summary.timeout,
    non2xx,
    statusCodes: log.statusCodes,
    loadgenCpuUs
  }
}
