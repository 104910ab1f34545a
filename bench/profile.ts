/**
 * `npm run profile`: where the proxy's CPU goes on the hot paths (issue 15).
 *
 * For each case (uncached and memory-cache hit, /small and /big) a fresh Switchyard process
 * runs under `node --cpu-prof` (workers: 1), gets a warm-up, then a bounded load from
 * 127.0.0.1 (autocannon in this process), and is stopped with SIGTERM, which writes the
 * profile on its way out. Each profile is summarised into bench/results/:
 *
 *   profile-<case>.txt      self and total time by function, and by package
 *   profile-<case>.folded   collapsed stacks (flamegraph.pl, speedscope, inferno)
 *   profile-<case>.cpuprofile  the raw profile (Chrome DevTools, speedscope)
 *
 * Proportions are what to read: absolute times move with whatever else runs on the machine,
 * and the profiler itself costs a little per sample.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { runLoad } from './load.js'
import { Processes } from './processes.js'
import { clkTck, ticksOf, userTicksOf } from './procfs.js'
import { startSwitchyard, startUpstream } from './services.js'

const DEFAULT_OUT = fileURLToPath(new URL('../../bench/results', import.meta.url))

interface CpuProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number }
  children?: number[]
}
interface CpuProfile { nodes: CpuProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

const CASES = [
  { name: 'uncached-small', path: '/u/small' },
  { name: 'uncached-big', path: '/u/big' },
  { name: 'hit-small', path: '/c/small' },
  { name: 'hit-big', path: '/c/big' }
] as const

/** A short, stable name for a frame: function (package/file:line). */
function frameKey(f: CpuProfileNode['callFrame']): string {
  const name = f.functionName === '' ? '(anonymous)' : f.functionName
  if (f.url === '') return name
  return `${name} (${shortUrl(f.url)}:${f.lineNumber + 1})`
}

function shortUrl(url: string): string {
  const u = url.replace(/^file:\/\//, '')
  const nm = u.lastIndexOf('/node_modules/')
  if (nm >= 0) return u.slice(nm + '/node_modules/'.length)
  const dist = u.indexOf('/dist/')
  if (dist >= 0) return u.slice(dist + '/dist/'.length)
  return u
}

/** Which package a frame belongs to: node internals, a dependency, ours, or V8's own buckets. */
function packageOf(f: CpuProfileNode['callFrame']): string {
  const u = f.url
  if (u === '') return f.functionName.startsWith('(') ? f.functionName : '(native)'
  if (u.startsWith('node:')) return `node:${u.slice(5).split('/')[0]}`
  const nm = u.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = u.slice(nm + '/node_modules/'.length).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  const src = u.indexOf('/dist/src/')
  if (src >= 0) return `switchyard:${u.slice(src + '/dist/src/'.length).split('/')[0]}`
  return u
}

export interface ProfileSummary { text: string; folded: string }

/** Self and total time by function and by package, and collapsed stacks. */
export function summarise(profile: CpuProfile, title: string, window?: { from: number; to: number }, top = 40): ProfileSummary {
  const byId = new Map<number, CpuProfileNode>()
  const parent = new Map<number, number>()
  for (const n of profile.nodes) {
    byId.set(n.id, n)
    for (const c of n.children ?? []) parent.set(c, n.id)
  }
  // Each sample's time: the delta to the next sample (the last gets the mean).
  const { samples, timeDeltas } = profile
  // Only samples inside `window` (µs on the monotonic clock V8 and process.hrtime share): the
  // measured load, not start-up (module loading, schema compiling) or the warm-up.
  const dt = new Float64Array(samples.length)
  let sum = 0
  let at = profile.startTime
  for (let i = 0; i < samples.length; i++) {
    at += timeDeltas[i]
    const d = i + 1 < timeDeltas.length ? timeDeltas[i + 1] : 0
    const inside = window === undefined || (at >= window.from && at <= window.to)
    dt[i] = d > 0 && inside ? d : 0
    sum += dt[i]
  }
  const self = new Map<string, number>()
  const total = new Map<string, number>()
  const pkgSelf = new Map<string, number>()
  const pkgTotal = new Map<string, number>()
  const stackTime = new Map<number, number>()
  let busy = 0
  for (let i = 0; i < samples.length; i++) stackTime.set(samples[i], (stackTime.get(samples[i]) ?? 0) + dt[i])
  const folded: string[] = []
  for (const [leafId, t] of stackTime) {
    const leaf = byId.get(leafId)
    if (leaf === undefined) continue
    const key = frameKey(leaf.callFrame)
    if (leaf.callFrame.functionName === '(idle)' || t === 0) continue
    busy += t
    self.set(key, (self.get(key) ?? 0) + t)
    const pkg = packageOf(leaf.callFrame)
    pkgSelf.set(pkg, (pkgSelf.get(pkg) ?? 0) + t)
    const seenKeys = new Set<string>()
    const seenPkgs = new Set<string>()
    const chain: string[] = []
    for (let id: number | undefined = leafId; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id) as CpuProfileNode
      const k = frameKey(n.callFrame)
      if (n.callFrame.functionName !== '(root)') chain.push(k.replace(/;/g, ','))
      if (!seenKeys.has(k)) { seenKeys.add(k); total.set(k, (total.get(k) ?? 0) + t) }
      const p = packageOf(n.callFrame)
      if (!seenPkgs.has(p)) { seenPkgs.add(p); pkgTotal.set(p, (pkgTotal.get(p) ?? 0) + t) }
    }
    folded.push(`${chain.reverse().join(';')} ${Math.round(t)}`)
  }
  const pct = (v: number): string => `${((100 * v) / busy).toFixed(1).padStart(5)}%`
  const rows = (m: Map<string, number>, other: Map<string, number>, label: string, otherLabel: string): string[] => {
    const sorted = [...m].sort((a, b) => b[1] - a[1]).slice(0, top)
    return [`${label.padStart(6)} ${otherLabel.padStart(6)}  function`, ...sorted.map(([k, v]) => `${pct(v)} ${pct(other.get(k) ?? 0)}  ${k}`)]
  }
  const text = [
    `${title}`,
    `busy ${(busy / 1000).toFixed(0)} ms of ${(sum / 1000).toFixed(0)} ms sampled (idle left out); percentages of busy time`,
    'Samples are wall-clock time on the main thread: a socket write (writev, writeLatin1String) also counts the',
    'kernel delivering the bytes to the peer on loopback and any time the process waited inside the call, so',
    'compare it with the user/system split above, not with the share of CPU.',
    '',
    'By package (self, total):',
    ...rows(pkgSelf, pkgTotal, 'self', 'total'),
    '',
    `Top ${top} functions by self time (self, total):`,
    ...rows(self, total, 'self', 'total'),
    '',
    `Top ${top} functions by total time (total, self):`,
    ...rows(total, self, 'total', 'self'),
    ''
  ].join('\n')
  return { text, folded: `${folded.join('\n')}\n` }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '8' },
      warmup: { type: 'string', default: '3' },
      connections: { type: 'string', default: '50' },
      only: { type: 'string' },
      out: { type: 'string', default: DEFAULT_OUT },
      tag: { type: 'string', default: '' }
    }
  })
  const durationS = Number(values.duration)
  const warmupS = Number(values.warmup)
  const connections = Number(values.connections)
  const out = values.out
  const tag = values.tag === '' ? '' : `-${values.tag}`
  mkdirSync(out, { recursive: true })
  const procs = new Processes()
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-profile-'))
  process.on('exit', () => procs.killAllSync())
  const lines: string[] = []
  try {
    const upstreams = [await startUpstream(procs, 'upstream-1'), await startUpstream(procs, 'upstream-2')]
    for (const c of CASES) {
      if (values.only !== undefined && !new RegExp(values.only).test(c.name)) continue
      const profDir = join(dir, c.name)
      mkdirSync(profDir)
      const sy = await startSwitchyard(procs, dir, {
        name: `sy-${c.name}`,
        upstreams,
        store: { kind: 'memory' },
        workers: 1,
        nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`, '--cpu-prof-interval=250']
      })
      const url = `${sy.url}${c.path}`
      await runLoad({ title: `warmup ${c.name}`, urls: [url], connections, durationS: warmupS })
      const t0 = ticksOf(sy.proc.pids)
      const u0 = userTicksOf(sy.proc.pids)
      const from = Number(process.hrtime.bigint() / 1000n)
      const load = await runLoad({ title: c.name, urls: [url], connections, durationS })
      const to = Number(process.hrtime.bigint() / 1000n)
      const t1 = ticksOf(sy.proc.pids)
      const u1 = userTicksOf(sy.proc.pids)
      const usPerReq = (((t1 - t0) * 1e6) / clkTck()) / load.requests
      const userPerReq = (((u1 - u0) * 1e6) / clkTck()) / load.requests
      process.kill(sy.proc.pid, 'SIGTERM')
      await sy.proc.exited
      const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'))
      if (file === undefined) throw new Error(`${c.name}: no .cpuprofile written in ${profDir}`)
      const profile = JSON.parse(readFileSync(join(profDir, file), 'utf8')) as CpuProfile
      const head = `${c.name}: GET ${c.path}, ${connections} connections, ${durationS} s after ${warmupS} s warm-up: ${Math.round(load.rps)} req/s, proxy ${usPerReq.toFixed(1)} µs/req under the profiler (user ${userPerReq.toFixed(1)}, system ${(usPerReq - userPerReq).toFixed(1)}; profile: the measured run only), ${load.errors + load.non2xx} errors/non-2xx`
      const s = summarise(profile, head, { from, to })
      const base = join(out, `profile-${c.name}${tag}`)
      writeFileSync(`${base}.txt`, s.text)
      writeFileSync(`${base}.folded`, s.folded)
      copyFileSync(join(profDir, file), `${base}.cpuprofile`)
      lines.push(head, `  ${base}.txt, .folded, .cpuprofile`)
      process.stderr.write(`${head}\n`)
    }
  } finally {
    await procs.stopAll()
    rmSync(dir, { recursive: true, force: true })
  }
  process.stdout.write(`${lines.join('\n')}\n`)
  return 0
}

main().then((code) => { process.exitCode = code }, (err: unknown) => {
  process.stderr.write(`profile: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exitCode = 1
})
