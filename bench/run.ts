/**
 * `npm run bench`: Switchyard's overhead, measured honestly on a small shared machine.
 *
 * Load generator, proxy and upstreams share the same cores, so absolute req/s say as much about
 * the machine (and whatever else runs on it) as about the proxy. Every figure is therefore also
 * given relative to the direct upstream measured in the same repetition, scenarios alternate
 * round-robin so drift spreads evenly, and the proxy's own CPU time per request is read from
 * /proc. See bench/README.md.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { H2LOAD_MISSING, haveH2load, runH2load, stopH2load } from './h2load.js'
import { closeSampler, runLoad, sampleHits, stopLoad, type LoadResult } from './load.js'
import { NGINX_MISSING, haveNginx, startNginx } from './nginx.js'
import { haveWrk, runWrk, stopWrk } from './wrk.js'
import { runSoak } from './soak.js'
import { parseOptions, USAGE, UsageError } from './options.js'
import { Processes, type Tracked } from './processes.js'
import { clkTck, cpuInfo, peakRss, ticksOf } from './procfs.js'
import { formatCompare, formatCpu, formatTransports, formatRss, formatTable, readRecord, writeRecord } from './report.js'
import { allScenarios, summarise, type ProcessCpu, type ProcessRecord, type RunOptions, type RunRecord, type ScenarioResult, type TargetName } from './results.js'
import { checkConfig, haveCommand, startRedis, startSwitchyard, startUpstream, switchyardYaml, type Redis, type Upstream } from './services.js'

/** Under --quick, everything must fit in this (the whole run, startup included, < 1 minute). */
const QUICK_BUDGET_S = 50
/** Estimated fixed cost: starting and stopping processes, config checks. */
const STARTUP_S = 8
/** Per-run overhead beyond its duration: connecting, sampling, reading /proc. */
const RUN_OVERHEAD_S = 0.25
const HIT_SAMPLES_WARMUP = 20
const HIT_SAMPLES_RUN = 10

/** `tlsUrl`: the target's TLS listener (h2 and http/1.1 by ALPN), for the HTTPS and HTTP/2 rows. */
interface Target { urls: string[]; proxy?: Tracked; tlsUrl?: string }

/** What ALPN must have chosen for the TLS rows; anything else measured the wrong protocol. */
const EXPECTED_PROTOCOL = { https: 'http/1.1', h2: 'h2' } as const

class Interrupted extends Error {}

function log(line: string): void {
  process.stderr.write(`${line}\n`)
}

function firstLine(text: string): string {
  return text.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? ''
}

function estimateS(n: number, o: RunOptions): number {
  return STARTUP_S + n * (o.warmupS + RUN_OVERHEAD_S + o.reps * (o.durationS + RUN_OVERHEAD_S))
}

function cpuOf(ticks: number, requests: number): ProcessCpu {
  const us = (ticks * 1e6) / clkTck()
  return { us, usPerReq: requests > 0 ? us / requests : Number.NaN }
}

function urlOf(target: Target, s: ScenarioResult, o: RunOptions): string[] {
  const query = o.delayMs > 0 ? `?delay=${o.delayMs}` : ''
  const bases = s.transport === undefined ? target.urls : [target.tlsUrl ?? '']
  return bases.map((base) => `${base}${s.prefix === '' ? '/' : s.prefix}${s.size}${query}`)
}

/** h2load's connections for the HTTP/2 row: as many requests in flight as the other rows have connections. */
function h2Clients(o: RunOptions): { clients: number; streams: number } {
  const streams = o.h2Streams ?? 10
  return { clients: Math.max(1, Math.round(o.connections / streams)), streams }
}

async function main(argv: string[]): Promise<number> {
  let opts: RunOptions | undefined
  try {
    opts = parseOptions(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`bench: ${err.message}\n${USAGE}`)
    return 2
  }
  if (opts === undefined) {
    process.stdout.write(USAGE)
    return 0
  }
  const o = opts
  if (o.soakS !== undefined) return runSoak(o)
  // Plain HTTP/1.1 rows: wrk as the reference harness, when it is there (--loadgen overrides).
  const useWrk = o.loadgen === 'wrk' || (o.loadgen === undefined && haveWrk())
  if (o.loadgen === 'wrk' && !haveWrk()) {
    process.stderr.write('bench: --loadgen wrk: wrk is not on PATH (apt-get install wrk)\n')
    return 2
  }
  const older = o.compare === undefined ? undefined : readRecord(o.compare)

  const started = new Date()
  const procs = new Processes()
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-'))
  const results: ScenarioResult[] = allScenarios().map((def) => ({ ...def, status: 'ok', reps: [] }))
  const notes: string[] = []
  const configs: Record<string, string> = {}
  const targets = new Map<TargetName, Target>()
  let interrupted = false
  let stopped = false

  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) {
      // A second Ctrl-C: no more patience.
      procs.killAllSync()
      process.exit(130)
    }
    interrupted = true
    log(`\n${sig}: stopping the run and every process it started ...`)
    stopLoad()
    stopH2load()
    stopWrk()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  // Last resort: whatever ends this process, its children do not outlive it.
  process.on('exit', () => { if (!stopped) procs.killAllSync() })
  const check = (): void => { if (interrupted) throw new Interrupted('interrupted') }

  const markWhere = (which: (r: ScenarioResult) => boolean, status: 'skipped' | 'failed', note: string): void => {
    for (const r of results) if (which(r) && r.status === 'ok') { r.status = status; r.note = note }
  }
  const mark = (target: TargetName, status: 'skipped' | 'failed', note: string): void => markWhere((r) => r.target === target, status, note)

  if (o.only !== undefined) {
    const only = new RegExp(o.only)
    const sizes = new Set(results.filter((r) => only.test(r.id)).map((r) => r.size))
    for (const r of results) {
      const keep = only.test(r.id) || (r.target === 'upstreams' && sizes.has(r.size))
      if (!keep) { r.status = 'skipped'; r.note = 'not selected by --only' }
    }
  }

  let upstreams: Upstream[] = []
  let redis: Redis | undefined
  let fatal: unknown
  try {
    upstreams = [await startUpstream(procs, 'upstream-1'), await startUpstream(procs, 'upstream-2')]
    targets.set('upstreams', { urls: upstreams.map((u) => u.url) })
    check()

    // Which Switchyard variants does the config schema accept? `check` answers without listening.
    const baseFile = join(dir, 'check-base.yaml')
    writeFileSync(baseFile, switchyardYaml({ name: 'check-base', upstreams, store: { kind: 'memory' } }, 1, 2))
    const base = await checkConfig(procs, baseFile)
    if (!base.ok) throw new Error(`the bench config is rejected by switchyard check:\n${base.output}`)
    const workersFile = join(dir, 'check-workers.yaml')
    writeFileSync(workersFile, switchyardYaml({ name: 'check-workers', upstreams, store: { kind: 'memory' }, workers: 2 }, 1, 2))
    const workers = await checkConfig(procs, workersFile)
    // Where `workers` exists its default may be one process per core: pin the single-process
    // proxies to 1, so their CPU per request compares with the upstream's and nginx's one worker.
    const single = workers.ok ? { workers: 1 } : {}
    if (!workers.ok) {
      mark('switchyard-workers', 'skipped', 'workers not supported yet')
      notes.push(`workers: 2 rejected by switchyard check: ${firstLine(workers.output.split('\n').slice(1).join('\n') || workers.output)}`)
    }
    // The TLS listener (HTTPS and HTTP/2 rows): only if `check` accepts a listener list with TLS.
    if (results.some((r) => r.transport !== undefined && r.status === 'ok')) {
      const tlsFile = join(dir, 'check-tls.yaml')
      writeFileSync(tlsFile, switchyardYaml({ name: 'check-tls', upstreams, store: { kind: 'memory' }, tls: true }, 1, 2, 3))
      const tls = await checkConfig(procs, tlsFile)
      if (!tls.ok) {
        markWhere((r) => r.transport !== undefined, 'skipped', 'TLS listeners not supported')
        notes.push(`a TLS listener is rejected by switchyard check: ${firstLine(tls.output.split('\n').slice(1).join('\n') || tls.output)}`)
      }
    }
    if (!haveH2load()) {
      markWhere((r) => r.transport === 'h2', 'skipped', H2LOAD_MISSING)
      notes.push(H2LOAD_MISSING)
    }
    if (!haveCommand('redis-server')) {
      mark('switchyard-redis', 'skipped', 'redis-server not installed')
      mark('switchyard-redis-far', 'skipped', 'redis-server not installed')
      notes.push('redis-server is not on PATH: the Redis cache rows are skipped')
    }
    if (!haveNginx()) {
      mark('nginx', 'skipped', NGINX_MISSING)
      notes.push(NGINX_MISSING)
    }
    if (o.quick) {
      // Only what fits: drop peers first, then the workers rows of /big, then the other workers rows.
      const drops: Array<(r: ScenarioResult) => boolean> = [
        (r) => r.target === 'nginx',
        (r) => r.target === 'switchyard-workers' && r.size === 'big',
        (r) => r.target === 'switchyard-workers'
      ]
      for (const drop of drops) {
        const n = results.filter((r) => r.status === 'ok').length
        if (estimateS(n, o) <= QUICK_BUDGET_S) break
        markWhere(drop, 'skipped', 'not in the --quick time budget')
      }
    }
    check()

    const wanted = (t: TargetName): boolean => results.some((r) => r.target === t && r.status === 'ok')
    const start = async (t: TargetName, what: () => Promise<Target>): Promise<void> => {
      if (!wanted(t)) return
      try {
        targets.set(t, await what())
      } catch (err) {
        if (interrupted) throw new Interrupted('interrupted')
        const msg = (err as Error).message
        const [head, ...rest] = msg.split('\n')
        const detail = firstLine(rest.filter((l) => !/^\s*(at |node:|\^|$)/.test(l)).join('\n'))
        mark(t, 'failed', `${head}${detail === '' ? '' : ` ${detail}`}`.slice(0, 200))
        notes.push(`${t} did not start: ${(err as Error).message}`)
      }
    }
    await start('switchyard', async () => {
      const withTls = results.some((r) => r.target === 'switchyard' && r.transport !== undefined && r.status === 'ok')
      const sy = await startSwitchyard(procs, dir, { name: 'switchyard', upstreams, store: { kind: 'memory' }, ...single, ...(withTls ? { tls: true } : {}) })
      configs[sy.proc.name] = sy.yaml
      return { urls: [sy.url], proxy: sy.proc, ...(sy.tlsUrl === undefined ? {} : { tlsUrl: sy.tlsUrl }) }
    })
    check()
    await start('switchyard-redis', async () => {
      redis = await startRedis(procs, dir)
      const sy = await startSwitchyard(procs, dir, { name: 'switchyard-redis', upstreams, store: { kind: 'redis', url: redis.url, near: true }, ...single })
      configs[sy.proc.name] = sy.yaml
      return { urls: [sy.url], proxy: sy.proc }
    })
    check()
    await start('switchyard-redis-far', async () => {
      redis ??= await startRedis(procs, dir)
      const sy = await startSwitchyard(procs, dir, { name: 'switchyard-redis-far', upstreams, store: { kind: 'redis', url: redis.url, near: false }, ...single })
      configs[sy.proc.name] = sy.yaml
      return { urls: [sy.url], proxy: sy.proc }
    })
    check()
    await start('switchyard-workers', async () => {
      const sy = await startSwitchyard(procs, dir, { name: 'switchyard-workers', upstreams, store: { kind: 'memory' }, workers: 2 })
      configs[sy.proc.name] = sy.yaml
      return { urls: [sy.url], proxy: sy.proc }
    })
    check()
    await start('nginx', async () => {
      const ngx = await startNginx(procs, join(dir, 'nginx'), upstreams)
      configs.nginx = ngx.conf
      return { urls: [ngx.url], proxy: ngx.proc }
    })
    check()

    const runnable = results.filter((r) => r.status === 'ok')
    const h2 = h2Clients(o)
    notes.push(`plain HTTP/1.1 rows loaded by ${useWrk ? 'wrk (2 threads, as ../shared/bench)' : 'autocannon (in the harness process)'}; the HTTPS row by autocannon${runnable.some((r) => r.transport === 'h2') ? ', the HTTP/2 row by h2load' : ''}`)
    log(`bench: ${runnable.length} scenarios, warm-up ${o.warmupS} s each, then ${o.reps} x ${o.durationS} s alternating, ${o.connections} connections${runnable.some((r) => r.transport === 'h2') ? ` (HTTP/2: ${h2.clients} x ${h2.streams} streams)` : ''} (about ${Math.round(estimateS(runnable.length, o))} s)`)

    /**
     * One run of a scenario: autocannon (plain or HTTPS, in process) or h2load (HTTP/2, a child).
     * Resolves undefined when the row failed (h2load did not finish, or ALPN chose another
     * protocol than the row is about): the row is marked failed and left out from then on.
     */
    let h2runs = 0
    const measure = async (s: ScenarioResult, urls: string[], title: string, durationS: number): Promise<LoadResult | undefined> => {
      let load: LoadResult
      if (s.transport === 'h2') {
        try {
          load = await runH2load(procs, { title, url: urls[0], ...h2, durationS, headers: s.headers, logFile: join(dir, `h2load-${++h2runs}.tsv`) })
        } catch (err) {
          check()
          markWhere((r) => r === s, 'failed', (err as Error).message.slice(0, 200))
          notes.push(`${s.id}: ${(err as Error).message}`)
          return undefined
        }
      } else if (useWrk && s.transport === undefined) {
        load = await runWrk(procs, { title, urls, connections: o.connections, durationS, headers: s.headers })
      } else {
        load = await runLoad({ title, urls, connections: o.connections, durationS, headers: s.headers, ...(s.transport === 'https' ? { alpn: ['http/1.1'] } : {}) })
      }
      const expected = s.transport === undefined ? undefined : EXPECTED_PROTOCOL[s.transport]
      if (expected !== undefined && load.protocol !== expected) {
        markWhere((r) => r === s, 'failed', `ALPN chose ${load.protocol ?? 'nothing'}, not ${expected}`)
        return undefined
      }
      return load
    }

    // Warm-up in table order: JIT, connection pools and caches filled; then sample the cache.
    for (const s of runnable) {
      check()
      const target = targets.get(s.target) as Target
      const urls = urlOf(target, s, o)
      const warmup = await measure(s, urls, `warmup ${s.id}`, o.warmupS)
      if (warmup === undefined) continue
      s.warmup = warmup
      if (s.cached) s.warmupHits = await sampleHits(urls[0], HIT_SAMPLES_WARMUP, s.headers)
    }

    const groupPids = (ps: readonly Tracked[]): number[] => ps.flatMap((p) => p.pids)
    for (let rep = 0; rep < o.reps; rep++) {
      // Rotate the order every repetition so no scenario always runs first or last.
      const shift = Math.floor((rep * runnable.length) / o.reps)
      const order = [...runnable.slice(shift), ...runnable.slice(0, shift)]
      for (let i = 0; i < order.length; i++) {
        check()
        const s = order[i]
        if (s.status !== 'ok') continue
        const target = targets.get(s.target) as Target
        const urls = urlOf(target, s, o)
        const proxyPids = target.proxy === undefined ? [] : procs.recordTree(target.proxy)
        const upPids = groupPids(upstreams.map((u) => u.proc))
        const redisPids = (s.target === 'switchyard-redis' || s.target === 'switchyard-redis-far') && redis !== undefined ? redis.proc.pids : []
        const t0 = { proxy: ticksOf(proxyPids), up: ticksOf(upPids), redis: ticksOf(redisPids) }
        const startedAt = new Date().toISOString()
        const measured = await measure(s, urls, s.id, o.durationS)
        if (measured === undefined) continue
        const load = measured
        const t1 = { proxy: ticksOf(proxyPids), up: ticksOf(upPids), redis: ticksOf(redisPids) }
        check()
        const n = load.requests
        s.reps.push({
          rep,
          order: i,
          startedAt,
          load,
          cpu: {
            ...(target.proxy === undefined ? {} : { proxy: cpuOf(t1.proxy - t0.proxy, n) }),
            upstreams: cpuOf(t1.up - t0.up, n),
            ...(redisPids.length === 0 ? {} : { redis: cpuOf(t1.redis - t0.redis, n) }),
            loadgen: { us: load.loadgenCpuUs, usPerReq: n > 0 ? load.loadgenCpuUs / n : Number.NaN }
          },
          ...(s.cached ? { hits: await sampleHits(urls[0], HIT_SAMPLES_RUN, s.headers) } : {})
        })
        const cpu = s.reps[s.reps.length - 1].cpu.proxy
        const bad = load.errors + load.non2xx
        log(`[rep ${rep + 1}/${o.reps} ${i + 1}/${order.length}] ${s.label}: ${Math.round(load.rps)} req/s, p99 ${load.latencyMs.p99.toFixed(2)} ms${cpu === undefined ? '' : `, proxy ${cpu.usPerReq.toFixed(1)} µs/req`}${bad > 0 ? `, ${bad} errors/non-2xx` : ''}`)
      }
    }
  } catch (err) {
    if (!(err instanceof Interrupted)) fatal = err
  }

  // Peak RSS before anything stops (VmHWM disappears with the process).
  const processes: ProcessRecord[] = procs.all().filter((t) => t.role !== 'check' && t.role !== 'loadgen').map((t) => {
    if (!t.hasExited()) procs.recordTree(t)
    const byPid: Record<string, number> = {}
    for (const pid of t.pids) {
      const b = peakRss(pid)
      if (b !== undefined) byPid[String(pid)] = b
    }
    const values = Object.values(byPid)
    return { name: t.name, role: t.role, pids: [...t.pids], ...(values.length > 0 ? { peakRssBytes: values.reduce((a, b) => a + b, 0) } : {}), peakRssByPid: byPid }
  })
  closeSampler()
  const stop = await procs.stopAll()
  const leftovers = stop.leftovers
  stopped = leftovers.length === 0
  if (stop.killed.length > 0) notes.push(`did not stop on SIGTERM within 5 s, killed: ${stop.killed.join(', ')}`)

  summarise(results)
  const finished = new Date()
  const record: RunRecord = {
    version: 1,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    wallS: (finished.getTime() - started.getTime()) / 1000,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpu: cpuInfo(),
    clkTck: clkTck(),
    options: o,
    notes,
    configs,
    scenarios: results,
    processes,
    pids: procs.recordedPids(),
    leftoverPids: leftovers,
    stopMs: stop.stopMs,
    interrupted
  }
  const file = writeRecord(o.out, record)

  const out: string[] = [
    `Switchyard bench: ${record.startedAt}, node ${record.node}, ${record.cpu.model} x ${record.cpu.cpus}, ` +
      `${o.reps} rep(s) x ${o.durationS} s, warm-up ${o.warmupS} s, ${o.connections} connections${o.delayMs > 0 ? `, upstream delay ${o.delayMs} ms` : ''}${o.quick ? ' (--quick)' : ''}`,
    '',
    formatTable(record),
    '',
    ...formatTransports(record),
    'CPU µs per request by process (median):',
    '',
    formatCpu(record),
    '',
    'Peak RSS:',
    '',
    formatRss(record),
    ''
  ]
  for (const n of notes) out.push(`note: ${n}`)
  if (older !== undefined && o.compare !== undefined) out.push('', formatCompare(older, record, o.compare))
  out.push('', `wrote ${file} (${record.wallS.toFixed(1)} s)`)
  process.stdout.write(`${out.join('\n')}\n`)

  if (leftovers.length > 0) log(`bench: processes left behind: ${leftovers.join(' ')}`)
  if (fatal !== undefined) {
    log(`bench: ${fatal instanceof Error ? fatal.stack ?? fatal.message : String(fatal)}`)
    log(`bench: kept ${dir} for inspection`)
    return 1
  }
  rmSync(dir, { recursive: true, force: true })
  if (interrupted) return 130
  return leftovers.length > 0 || results.some((r) => r.status === 'failed') ? 1 : 0
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exitCode = 1
  }
)
