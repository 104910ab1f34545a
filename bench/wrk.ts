/**
 * The plain HTTP/1.1 load generator when wrk is installed (the default then, `--loadgen`): the
 * reference harness (../shared/bench) measures with wrk, a C program that needs a fraction of
 * autocannon's CPU per request. autocannon runs inside this Node process on the same two
 * cores, so it takes CPU from the proxy and changes how requests batch per event-loop turn,
 * which moved the proxy's CPU per request (issue 15: 58 µs under autocannon, 69 under wrk).
 * Same settings as the reference: 2 threads, keep-alive, the connections split between them.
 * Several URLs (the direct anchor's two upstreams): each thread is pointed at one of them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { LoadResult } from './load.js'
import type { Processes, Tracked } from './processes.js'
import { clkTck } from './procfs.js'
import { haveCommand } from './services.js'
import { runLoadTool } from './load-tool.js'

export function haveWrk(): boolean {
  return haveCommand('wrk')
}

export interface WrkOptions {
  title: string
  urls: string[]
  connections: number
  durationS: number
  headers?: Record<string, string>
  threads?: number
}

/** The line the wrapper shell adds after wrk exits: its own /proc/<pid>/stat (cutime: wrk's CPU). */
const STAT_PREFIX = 'wrk-wrapper-stat: '

/**
 * Points thread i at the i-th address of WRK_ADDRS (host:port list), round robin, and prints
 * one machine-readable line at the end (the reference harness's wrk-report.lua, plus what we need).
 */
const SCRIPT = `
local targets = {}
for hp in string.gmatch(os.getenv("WRK_ADDRS") or "", "[^,]+") do targets[#targets + 1] = hp end
local n = 0
function setup(thread)
  if #targets > 1 then
    local host, port = string.match(targets[(n % #targets) + 1], "^(.*):(%d+)$")
    thread.addr = wrk.lookup(host, port)[1]
    n = n + 1
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
`

interface WrkJson { requests: number; duration_us: number; p50_us: number; p90_us: number; p99_us: number; max_us: number; mean_us: number; err_connect: number; err_read: number; err_write: number; err_status: number; err_timeout: number }

let current: Tracked | undefined
let scriptFile: string | undefined

export function stopWrk(): void {
  if (current !== undefined) {
    try { process.kill(-current.pid, 'SIGINT') } catch { /* already gone */ }
  }
}

export async function runWrk(procs: Processes, opts: WrkOptions): Promise<LoadResult> {
  if (scriptFile === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-wrk-'))
    scriptFile = join(dir, 'report.lua')
    writeFileSync(scriptFile, SCRIPT)
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
  }
  const threads = Math.max(opts.threads ?? 2, opts.urls.length)
  const args = [
    '-t', String(threads),
    '-c', String(Math.max(opts.connections, threads)),
    // wrk takes whole seconds (s, m, h units only).
    '-d', `${Math.max(1, Math.round(opts.durationS))}s`,
    '--timeout', '10s',
    '-s', scriptFile,
    ...Object.entries(opts.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}: ${v}`]),
    opts.urls[0]
  ]
  const addrs = opts.urls.map((u) => new URL(u).host).join(',')
  const out = await runLoadTool(procs, args, { tool: 'wrk', title: opts.title, durationS: opts.durationS, statPrefix: STAT_PREFIX, env: { WRK_ADDRS: addrs }, track: (p) => { current = p } })
  const line = out.split('\n').find((l) => l.startsWith('WRKJSON '))
  if (line === undefined) throw new Error(`wrk ${opts.title} printed no summary; output: ${out.trim().split('\n').slice(-6).join(' | ')}`)
  const w = JSON.parse(line.slice('WRKJSON '.length)) as WrkJson
  const statLine = out.split('\n').find((l) => l.startsWith(STAT_PREFIX))
  let loadgenCpuUs = Number.NaN
  if (statLine !== undefined) {
    const stat = statLine.slice(STAT_PREFIX.length)
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    loadgenCpuUs = ((Number(f[13]) + Number(f[14])) * 1e6) / clkTck()
  }
  const durationS = w.duration_us / 1e6
  return {
    loadgen: 'wrk',
    requests: w.requests,
    durationS,
    rps: durationS > 0 ? w.requests / durationS : 0,
    latencyMs: { p50: w.p50_us / 1000, p90: w.p90_us / 1000, p99: w.p99_us / 1000, max: w.max_us / 1000, mean: w.mean_us / 1000 },
    errors: w.err_connect + w.err_read + w.err_write + w.err_timeout,
    timeouts: w.err_timeout,
    // wrk counts answers with a status of 400 or more; it keeps no per-code counts.
    non2xx: w.err_status,
    statusCodes: {},
    loadgenCpuUs
  }
}
