/** What a run prints (markdown tables) and writes (one JSON file per run). */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { RunRecord, ScenarioResult, Spread } from './results.js'

/** Below this sampled hit ratio a cache scenario is flagged: it was measuring misses. */
const HIT_RATIO_OK = 0.9

const DASH = '—'

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ')
}

function fixed(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toFixed(digits) : DASH
}

function withSpread(s: Spread, digits: number): string {
  return `${fixed(s.median, digits)} (${fixed(s.min, digits)}–${fixed(s.max, digits)})`
}

function row(cells: string[]): string {
  return `| ${cells.map(cell).join(' | ')} |`
}

function scenarioRow(r: ScenarioResult): string {
  if (r.status !== 'ok' || r.summary === undefined) {
    const what = r.status === 'failed' ? `⚠ failed: ${r.note ?? 'unknown error'}` : `skipped: ${r.note ?? ''}`
    return row([r.label, what, '', '', '', '', '', '', '', '', ''])
  }
  const s = r.summary
  const anchor = r.target === 'upstreams'
  const errors = s.errors === 0 ? '0' : `⚠ ${s.errors}${s.non2xx > 0 ? ` (non-2xx ${s.non2xx})` : ''}`
  let hits = DASH
  if (s.hitRatio !== undefined) {
    const text = `${Math.round(s.hitRatio * 100)}% (${Math.round(s.hitRatio * (s.hitsSampled ?? 0))}/${s.hitsSampled ?? 0})`
    hits = s.hitRatio < HIT_RATIO_OK ? `⚠ ${text}` : text
  }
  return row([
    r.label,
    fixed(s.rps.median, 0),
    anchor ? '1 (anchor)' : s.ratio === undefined ? DASH : withSpread(s.ratio, 2),
    r.target === 'nginx' ? '1 (peer)' : s.nginx?.rps === undefined ? DASH : withSpread(s.nginx.rps, 2),
    s.proxyCpuUsPerReq === undefined ? DASH : fixed(s.proxyCpuUsPerReq.median, 1),
    r.target === 'nginx' ? '1 (peer)' : s.nginx?.cpu === undefined ? DASH : withSpread(s.nginx.cpu, 2),
    fixed(s.p50Ms.median, 2),
    fixed(s.p99Ms.median, 2),
    s.addedP99Ms === undefined ? DASH : `${s.addedP99Ms.median >= 0 ? '+' : ''}${fixed(s.addedP99Ms.median, 2)}`,
    errors,
    hits
  ])
}

export function formatTable(rec: RunRecord): string {
  const head = ['scenario', 'req/s median', '× direct median (min–max)', 'req/s × nginx (min–max)', 'proxy CPU µs/req', 'proxy CPU × nginx (min–max)', 'p50 ms', 'p99 ms', 'added p99 ms', 'errors', 'hit ratio']
  return [row(head), `|${head.map(() => '---').join('|')}|`, ...rec.scenarios.map(scenarioRow)].join('\n')
}

function clientOf(r: ScenarioResult, connections: number): string {
  const load = r.reps[0]?.load ?? r.warmup
  if (load === undefined) return DASH
  if (load.loadgen === 'wrk') return `wrk, 2 threads, ${connections} keep-alive connections`
  const who = load.loadgen === 'h2load' ? `h2load, ${load.clients ?? '?'} connections × ${load.streams ?? '?'} streams` : `autocannon, ${connections} keep-alive connections`
  return load.protocol === undefined ? who : `${who}, ALPN ${load.protocol}`
}

/**
 * The TLS rows against the plain HTTP/1.1 row they name (`versus`): proxy CPU per request and
 * req/s, each run divided by the plain row's run of the same repetition. Empty when the record
 * has no TLS rows (older results).
 */
export function formatTransports(rec: RunRecord): string[] {
  const rows = rec.scenarios.filter((r) => r.versus !== undefined)
  if (rows.length === 0) return []
  const out: string[] = []
  const head = ['scenario', 'client', 'proxy CPU µs/req', 'proxy CPU × plain HTTP/1.1 (min–max)', 'req/s × plain HTTP/1.1 (min–max)', 'load generator CPU µs/req']
  const table: string[] = [row(head), `|${head.map(() => '---').join('|')}|`]
  const refs = new Set(rows.map((r) => r.versus))
  for (const ref of rec.scenarios.filter((r) => refs.has(r.id))) {
    const s = ref.summary
    table.push(row([`${ref.label} (plain HTTP/1.1)`, ref.status === 'ok' ? clientOf(ref, rec.options.connections) : ref.status, s?.proxyCpuUsPerReq === undefined ? DASH : fixed(s.proxyCpuUsPerReq.median, 1), '1 (reference)', '1 (reference)', s === undefined ? DASH : fixed(s.loadgenCpuUsPerReq.median, 1)]))
  }
  for (const r of rows) {
    const s = r.summary
    if (r.status !== 'ok' || s === undefined) {
      table.push(row([r.label, r.status === 'failed' ? `⚠ failed: ${r.note ?? 'unknown error'}` : `skipped: ${r.note ?? ''}`, '', '', '', '']))
      continue
    }
    table.push(row([
      r.label,
      clientOf(r, rec.options.connections),
      s.proxyCpuUsPerReq === undefined ? DASH : fixed(s.proxyCpuUsPerReq.median, 1),
      s.versus?.cpu === undefined ? DASH : withSpread(s.versus.cpu, 2),
      s.versus?.rps === undefined ? DASH : withSpread(s.versus.rps, 2),
      fixed(s.loadgenCpuUsPerReq.median, 1)
    ]))
  }
  out.push('HTTPS and HTTP/2 against plain HTTP/1.1 (every run ÷ the plain row\'s run in the same repetition; median, min–max):', '', ...table, '')
  const h2 = rows.find((r) => r.transport === 'h2' && r.summary !== undefined)
  if (h2?.summary !== undefined) {
    const ref = rec.scenarios.find((r) => r.id === h2.versus)?.summary
    const cpu = ref === undefined ? '' : ` (${fixed(h2.summary.loadgenCpuUsPerReq.median, 1)} µs per request against autocannon's ${fixed(ref.loadgenCpuUsPerReq.median, 1)})`
    out.push(
      `The HTTP/2 row's client is h2load, a C program that needs less CPU than autocannon${cpu}.`,
      `In that run the ${rec.cpu.cpus} shared cores have more to spare for the proxy and the upstreams: its req/s (and × direct) do not compare with the autocannon rows.`,
      'Its proxy CPU per request does: that is the figure to read. h2load keeps as many requests in flight (connections × streams) as autocannon has connections.',
      ''
    )
  }
  return out
}

/** CPU per request of every process involved (medians): where the work went. */
export function formatCpu(rec: RunRecord): string {
  const head = ['scenario', 'proxy', 'upstreams', 'redis', 'load generator']
  const rows = rec.scenarios.filter((r) => r.summary !== undefined).map((r) => {
    const s = r.summary as NonNullable<ScenarioResult['summary']>
    return row([r.label, s.proxyCpuUsPerReq === undefined ? DASH : fixed(s.proxyCpuUsPerReq.median, 1), fixed(s.upstreamCpuUsPerReq.median, 1), s.redisCpuUsPerReq === undefined ? DASH : fixed(s.redisCpuUsPerReq.median, 1), fixed(s.loadgenCpuUsPerReq.median, 1)])
  })
  return [row(head), `|${head.map(() => '---').join('|')}|`, ...rows].join('\n')
}

export function formatRss(rec: RunRecord): string {
  const head = ['process', 'pids', 'peak RSS (VmHWM) MiB']
  const rows = rec.processes.filter((p) => p.role === 'proxy' || p.role === 'nginx' || p.role === 'redis').map((p) => {
    const detail = Object.keys(p.peakRssByPid).length > 1
      ? ` (${Object.entries(p.peakRssByPid).map(([pid, b]) => `${pid}: ${fixed(b / 1048576, 1)}`).join(', ')})`
      : ''
    return row([p.name, p.pids.join(' '), p.peakRssBytes === undefined ? DASH : `${fixed(p.peakRssBytes / 1048576, 1)}${detail}`])
  })
  return [row(head), `|${head.map(() => '---').join('|')}|`, ...rows].join('\n')
}

/** Ratio (and proxy CPU) medians of this run against an older one, scenario by scenario. */
export function formatCompare(older: RunRecord, rec: RunRecord, olderName: string): string {
  const head = ['scenario', 'old × direct', 'new × direct', 'Δ ratio', 'old CPU µs/req', 'new CPU µs/req', 'Δ CPU']
  const rows: string[] = []
  for (const r of rec.scenarios) {
    const o = older.scenarios.find((x) => x.id === r.id)
    const a = o?.summary
    const b = r.summary
    if (a === undefined || b === undefined || r.target === 'upstreams') continue
    const ratio = a.ratio !== undefined && b.ratio !== undefined
      ? [fixed(a.ratio.median, 2), fixed(b.ratio.median, 2), `${b.ratio.median >= a.ratio.median ? '+' : ''}${fixed(b.ratio.median - a.ratio.median, 2)} (${pct(b.ratio.median, a.ratio.median)})`]
      : [DASH, DASH, DASH]
    const cpu = a.proxyCpuUsPerReq !== undefined && b.proxyCpuUsPerReq !== undefined
      ? [fixed(a.proxyCpuUsPerReq.median, 1), fixed(b.proxyCpuUsPerReq.median, 1), pct(b.proxyCpuUsPerReq.median, a.proxyCpuUsPerReq.median)]
      : [DASH, DASH, DASH]
    rows.push(row([r.label, ...ratio, ...cpu]))
  }
  const title = `Compared with ${olderName} (${older.startedAt}, ${older.options.reps} reps × ${older.options.durationS} s, ${older.cpu.model}):`
  return [title, '', row(head), `|${head.map(() => '---').join('|')}|`, ...rows].join('\n')
}

function pct(now: number, before: number): string {
  if (!Number.isFinite(now) || !Number.isFinite(before) || before === 0) return DASH
  const d = ((now - before) / before) * 100
  return `${d >= 0 ? '+' : ''}${d.toFixed(1)}%`
}

export function readRecord(file: string): RunRecord {
  const rec = JSON.parse(readFileSync(file, 'utf8')) as RunRecord
  if (rec.version !== 1 || !Array.isArray(rec.scenarios)) throw new Error(`${file}: not a benchmark result (version 1)`)
  return rec
}

/** Writes `<dir>/<ISO timestamp>.json` (colons as dashes, so the name is portable). */
export function writeRecord(dir: string, rec: RunRecord): string {
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `${rec.startedAt.replace(/:/g, '-')}.json`)
  writeFileSync(file, `${JSON.stringify(rec, null, 2)}\n`)
  return file
}
