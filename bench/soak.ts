/**
 * `npm run bench -- --soak S`: memory over time under load (issue 15: peak RSS flat over a
 * 5-minute soak). One Switchyard process (workers: 1, memory cache) in front of the two bench
 * upstreams gets the hit and uncached routes, /small and /big, in turn, 10 s each, and after
 * every 10 s the proxy's RSS (/proc), peak RSS, and V8 heap and external memory (its own
 * /metrics) are printed. No table, no JSON: this is a watch, not a measurement.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runLoad } from './load.js'
import { httpGetText } from './soak-http.js'
import { Processes } from './processes.js'
import type { RunOptions } from './results.js'
import { startSwitchyard, startUpstream } from './services.js'
import { haveWrk, runWrk } from './wrk.js'

const STEP_S = 10
const PATHS = ['/c/small', '/u/small', '/c/big', '/u/big']
const MIB = 1024 * 1024

function statusKb(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? Number.NaN : Number(m[1])
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([\\d.e+]+)`, 'm').exec(text)
  return m === null ? Number.NaN : Number(m[1])
}

export async function runSoak(o: RunOptions): Promise<number> {
  const procs = new Processes()
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-soak-'))
  let stop = false
  const onSignal = (): void => { stop = true }
  process.on('SIGINT', onSignal)
  process.on('exit', () => procs.killAllSync())
  const useWrk = o.loadgen === 'wrk' || (o.loadgen === undefined && haveWrk())
  try {
    const upstreams = [await startUpstream(procs, 'upstream-1'), await startUpstream(procs, 'upstream-2')]
    const sy = await startSwitchyard(procs, dir, { name: 'switchyard-soak', upstreams, store: { kind: 'memory' }, workers: 1 })
    const pid = sy.proc.pid
    const soakS = o.soakS ?? 300
    process.stdout.write(`soak: ${soakS} s, ${o.connections} connections (${useWrk ? 'wrk' : 'autocannon'}), ${PATHS.join(' ')} in turn, ${STEP_S} s each; proxy pid ${pid}\n`)
    // RSS = anonymous memory (the V8 heap, malloc: what this process allocated) + file-backed
    // pages (the node binary and libraries, shared with every other node process).
    process.stdout.write('   t s  path       req/s   RSS MiB  peak MiB  anon MiB  file MiB  heap used MiB  heap total MiB  new space MiB  old space MiB  external MiB\n')
    const t0 = Date.now()
    for (let i = 0; !stop && (Date.now() - t0) / 1000 < soakS; i++) {
      const path = PATHS[i % PATHS.length]
      const url = `${sy.url}${path}`
      const load = useWrk
        ? await runWrk(procs, { title: `soak ${path}`, urls: [url], connections: o.connections, durationS: STEP_S })
        : await runLoad({ title: `soak ${path}`, urls: [url], connections: o.connections, durationS: STEP_S })
      const m = await httpGetText(`${sy.adminUrl}/metrics`)
      const cells = [
        ((Date.now() - t0) / 1000).toFixed(0).padStart(5),
        path.padEnd(9),
        load.rps.toFixed(0).padStart(7),
        (statusKb(pid, 'VmRSS') / 1024).toFixed(1).padStart(8),
        (statusKb(pid, 'VmHWM') / 1024).toFixed(1).padStart(8),
        (statusKb(pid, 'RssAnon') / 1024).toFixed(1).padStart(8),
        (statusKb(pid, 'RssFile') / 1024).toFixed(1).padStart(8),
        (metric(m, 'nodejs_heap_size_used_bytes') / MIB).toFixed(1).padStart(13),
        (metric(m, 'nodejs_heap_size_total_bytes') / MIB).toFixed(1).padStart(14),
        (metric(m, 'nodejs_heap_space_size_total_bytes\\{space="new"\\}') / MIB).toFixed(1).padStart(13),
        (metric(m, 'nodejs_heap_space_size_total_bytes\\{space="old"\\}') / MIB).toFixed(1).padStart(13),
        (metric(m, 'nodejs_external_memory_bytes') / MIB).toFixed(1).padStart(12)
      ]
      process.stdout.write(`${cells.join('  ')}\n`)
    }
  } finally {
    await procs.stopAll()
    rmSync(dir, { recursive: true, force: true })
  }
  return stop ? 130 : 0
}
