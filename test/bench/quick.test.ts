/**
 * The benchmark harness end to end: `node dist/bench/run.js --quick --out <tmp>` must finish,
 * record a row for every scenario and leave no process behind. It asserts no speed: this is
 * about the harness telling the truth, not about the numbers. It loads both cores for a minute,
 * so `npm test` skips it unless asked: SWITCHYARD_BENCH_TEST=1 npm test.
 */
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Compiled tests live in dist/test/bench/; the harness in dist/bench/. */
const RUN = fileURLToPath(new URL('../../bench/run.js', import.meta.url))

/** Every scenario the harness must report, by id (size/kind). */
const KINDS = ['direct', 'switchyard', 'switchyard-memory-hit', 'switchyard-redis-hit', 'switchyard-workers2', 'switchyard-workers2-memory-hit', 'nginx', 'nginx-cache-hit']
/** /small only: the uncached route over the TLS listener, HTTP/1.1 keep-alive and HTTP/2 (h2load). */
const TLS_ROWS = ['small/switchyard-https', 'small/switchyard-h2']
const EXPECTED = [...['small', 'big'].flatMap((size) => KINDS.map((k) => `${size}/${k}`)), ...TLS_ROWS]
/** What ALPN must have chosen, as the load generator saw it. */
const PROTOCOL: Record<string, string> = { https: 'http/1.1', h2: 'h2' }

interface Row {
  id: string
  target: string
  transport?: string
  status: string
  note?: string
  reps: Array<{ load: { requests: number; protocol?: string; loadgen?: string }; cpu: { proxy?: { usPerReq: number } } }>
  summary?: { hitRatio?: number; versus?: { id: string; cpu?: { median: number } } }
}
interface RunResult { scenarios: Row[]; pids: Array<{ name: string; pid: number }>; leftoverPids: number[]; options: { quick: boolean; reps: number } }

/** Gone, or a zombie waiting to be reaped (it runs nothing and holds no port). */
function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]
    return state === 'Z' || state === 'X'
  } catch {
    return true
  }
}

function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

t.test('bench --quick runs every scenario and cleans up', { skip: process.env.SWITCHYARD_BENCH_TEST === '1' ? false : 'set SWITCHYARD_BENCH_TEST=1 to run the benchmark harness end to end' }, async (t) => {
  t.setTimeout(120_000)
  const out = mkdtempSync(join(tmpdir(), 'sy-bench-test-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))

  const child = spawn(process.execPath, [RUN, '--quick', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  // Past the deadline, SIGINT lets the harness stop its own children; SIGKILL if it hangs.
  const soft = setTimeout(() => child.kill('SIGINT'), 105_000)
  const hard = setTimeout(() => child.kill('SIGKILL'), 115_000)
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  clearTimeout(soft)
  clearTimeout(hard)

  t.equal(code, 0, `exit code 0\n--- stdout\n${stdout}\n--- stderr\n${stderr.slice(-3000)}`)
  const files = readdirSync(out).filter((f) => f.endsWith('.json'))
  t.equal(files.length, 1, 'one JSON result in --out')
  if (files.length !== 1) return
  const rec = JSON.parse(readFileSync(join(out, files[0]), 'utf8')) as RunResult
  t.equal(rec.options.quick, true)

  for (const id of EXPECTED) {
    const row = rec.scenarios.find((r) => r.id === id)
    t.ok(row, `a row for ${id}`)
    if (row === undefined) continue
    if (row.status === 'skipped') {
      const allowed = row.target === 'nginx' || row.target === 'switchyard-workers' || ((row.target === 'switchyard-redis' || row.target === 'switchyard-redis-far') && !onPath('redis-server')) ||
        (row.transport === 'h2' && !onPath('h2load'))
      t.ok(allowed, `${id} may only be skipped for nginx, workers, a missing redis-server or a missing h2load (note: ${row.note ?? ''})`)
      t.ok((row.note ?? '') !== '', `${id} says why it was skipped`)
    } else {
      t.equal(row.status, 'ok', `${id} ran (${row.note ?? ''})`)
      t.equal(row.reps.length, rec.options.reps, `${id} has every repetition`)
      t.ok(row.reps.every((r) => r.load.requests > 0), `${id} completed requests`)
      if (id.endsWith('-hit')) t.type(row.summary?.hitRatio, 'number', `${id} reports a hit ratio`)
      if (row.transport !== undefined) {
        t.ok(row.reps.every((r) => r.load.protocol === PROTOCOL[row.transport ?? '']), `${id} spoke ${PROTOCOL[row.transport]} (ALPN: ${row.reps.map((r) => r.load.protocol).join(', ')})`)
        t.ok(row.reps.every((r) => r.load.loadgen === (row.transport === 'h2' ? 'h2load' : 'autocannon')), `${id} used the right load generator`)
        t.ok(row.reps.every((r) => (r.cpu.proxy?.usPerReq ?? 0) > 0), `${id} measured the proxy's CPU`)
        t.equal(row.summary?.versus?.id, 'small/switchyard', `${id} is compared with plain HTTP/1.1`)
        t.type(row.summary?.versus?.cpu?.median, 'number', `${id} has a CPU ratio to plain HTTP/1.1`)
      }
    }
  }
  t.match(stdout, /\| scenario \| req\/s median \| × direct median \(min–max\) \|/, 'prints the table')
  t.match(stdout, /HTTPS and HTTP\/2 against plain HTTP\/1\.1/, 'prints the TLS rows against plain HTTP/1.1')

  t.ok(rec.pids.length >= 3, 'recorded the pids it started')
  t.same(rec.leftoverPids, [], 'the harness saw nothing left behind')
  const alive = rec.pids.filter((p) => !gone(p.pid))
  t.same(alive, [], 'every recorded process is gone')
})
