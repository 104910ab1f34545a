/**
 * Reload through the admin API: the answer and the log list every change with its class
 * (live, rebuild, restart) and the sidecars started/stopped; a changed connect timeout rebuilds
 * the origin's connection pool while its in-flight request finishes; restart-class changes
 * are not applied and are reported again; a validated config object can be applied directly.
 */
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { buildApp } from '../../src/app.js'
import { parseConfig } from '../../src/config/load.js'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, waitFor } from '../fixtures/proxy.js'
import { alive } from '../fixtures/cli.js'

interface Change { path: string; class: string; detail: string }

function capture() {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({ write(chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l)); cb() } })
  return { logger: pino({ level: 'info' }, stream), lines }
}

t.test('POST /admin/reload: every change with its class, in the answer and in the log', async (t) => {
  let release: (() => void) | undefined
  const a = await startUpstream('a', (req, res) => { if (req.url === '/slow') release = () => res.end('slow'); else res.end('a') })
  const b = await startUpstream('b', (_req, res) => { res.end('b') })
  t.teardown(async () => { await a.close(); await b.close() })
  const dir = mkdtempSync(join(tmpdir(), 'sy-reload-plan-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'upstreams.yaml')
  const v1 = `
listen: { host: 127.0.0.1, port: 18080 }
pools:
  web:
    members: [{ url: "${a.url}" }, { url: "${b.url}" }]
    timeouts: { connect_ms: 2000 }
routes: [{ name: all, match: {}, pool: web }]
`
  writeFileSync(file, v1)
  const { logger, lines } = capture()
  const app = await buildApp(parseConfig(v1, file, {}), { logger, sidecars: true, configPath: file })
  t.teardown(() => app.close())
  const url = (await app.listeners.listen({ host: '127.0.0.1', port: 0 }))[0]
  const adminUrl = await app.admin.listen({ host: '127.0.0.1', port: 0 })
  app.setReady(true)

  // A request in flight on member a's connection pool while that pool is rebuilt.
  const slow = fetchText(`${url}/slow`)
  await waitFor(() => release !== undefined, 5000, 'the slow request to reach a')

  writeFileSync(file, v1
    .replace('port: 18080', 'port: 18081')
    .replace(`{ url: "${b.url}" }`, `{ url: "${b.url}", weight: 3 }`)
    .replace('connect_ms: 2000', 'connect_ms: 500')
    .concat(`sidecars:\n  - { name: idle, command: ${JSON.stringify(process.execPath)}, args: ["-e", "setInterval(() => {}, 1e9)"] }\n`))
  const res = await fetchText(`${adminUrl}/admin/reload`, { method: 'POST' })
  t.equal(res.status, 200, res.body)
  const answer = JSON.parse(res.body) as { ok: boolean; changes: Change[]; rebuilt: string[]; started: string[]; stopped: string[] }
  const classes = Object.fromEntries(answer.changes.map((c) => [c.path, c.class]))
  t.same(classes, {
    'listen.port': 'restart',
    [`pools.web.members[${b.url}].weight`]: 'live',
    'pools.web.timeouts.connect_ms': 'rebuild',
    'sidecars[idle]': 'live'
  })
  t.same(answer.rebuilt.sort(), [a.url, b.url].sort(), 'both origins got a new connection pool')
  t.same(answer.started, ['idle'])
  t.same(answer.stopped, [])
  const logged = lines.filter((l) => typeof l.msg === 'string' && (l.msg as string).startsWith('config change')).map((l) => [l.path, l.class])
  t.same(logged.sort(), answer.changes.map((c) => [c.path, c.class]).sort(), 'one log line per change, with its class')
  t.match(lines.find((l) => l.msg === 'config reloaded'), { live: 2, rebuild: 1, restart: 1, started: ['idle'] })

  release?.()
  const r = await slow
  t.equal(r.status, 200)
  t.equal(r.body, 'slow', 'the request in flight on the old connection pool finished')
  const seen = new Set<string>()
  for (let i = 0; i < 8; i++) seen.add((await fetchText(`${url}/x`)).body)
  t.same([...seen].sort(), ['a', 'b'], 'both members answer through the rebuilt pools')
  const sidecar = app.supervisor?.list().find((s) => s.name === 'idle') as { pid: number } | undefined
  t.ok(sidecar !== undefined && alive(sidecar.pid), 'the added sidecar runs')

  const again = JSON.parse((await fetchText(`${adminUrl}/admin/reload`, { method: 'POST' })).body) as { changes: Change[]; rebuilt: string[]; started: string[] }
  t.same(again.changes.map((c) => [c.path, c.class]), [['listen.port', 'restart']], 'what needs a restart is reported until one happens; the rest is applied')
  t.same(again.rebuilt, [])
  t.same(again.started, [])

  writeFileSync(file, 'pools: { web: { members: [] } }\nroutes: []\n')
  const bad = await fetchText(`${adminUrl}/admin/reload`, { method: 'POST' })
  t.equal(bad.status, 422)
  t.match(JSON.parse(bad.body), { ok: false, error: /pools\.web\.members: expected at least 1 item/ })
})

t.test('reload(config) applies a validated config object without reading any file', async (t) => {
  const a = await startUpstream('a', (_req, res) => { res.end('a') })
  const b = await startUpstream('b', (_req, res) => { res.end('b') })
  t.teardown(async () => { await a.close(); await b.close() })
  const v1 = parseConfig(`pools: { web: { members: [{ url: "${a.url}" }] } }\nroutes: [{ name: all, match: {}, pool: web }]\n`, 'v1.yaml', {})
  const app = await buildApp(v1, { logger: pino({ level: 'silent' }) })
  t.teardown(() => app.close())
  const url = (await app.listeners.listen({ host: '127.0.0.1', port: 0 }))[0]
  t.match(await app.reload(), { ok: false, error: 'no config file to reload from' })
  const v2 = parseConfig(`pools: { web: { members: [{ url: "${b.url}" }] } }\nroutes: [{ name: all, match: {}, pool: web }]\n`, 'v2.yaml', {})
  const answer = await app.reload(v2)
  t.match(answer, { ok: true, changes: [{ path: `pools.web.members[${a.url}]`, class: 'live' }, { path: `pools.web.members[${b.url}]`, class: 'live' }] })
  t.equal((await fetchText(`${url}/`)).body, 'b', 'the new member serves')
})

t.test('reload metrics on the admin /metrics: results counted, last success time, last result', async (t) => {
  const a = await startUpstream('a', (_req, res) => { res.end('a') })
  t.teardown(() => a.close())
  const dir = mkdtempSync(join(tmpdir(), 'sy-reload-metrics-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'upstreams.yaml')
  const good = `pools: { web: { members: [{ url: "${a.url}" }] } }\nroutes: [{ name: all, match: {}, pool: web }]\n`
  writeFileSync(file, good)
  const booted = Date.now() / 1000
  const app = await buildApp(parseConfig(good, file, {}), { logger: pino({ level: 'silent' }), configPath: file })
  t.teardown(() => app.close())
  const adminUrl = await app.admin.listen({ host: '127.0.0.1', port: 0 })
  const scrape = async () => {
    const body = (await fetchText(`${adminUrl}/metrics`)).body
    const value = (series: string): number => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(body)?.[1])
    return {
      success: value('switchyard_config_reloads_total{result="success"}'),
      failure: value('switchyard_config_reloads_total{result="failure"}'),
      at: value('switchyard_config_last_reload_success_timestamp_seconds'),
      ok: value('switchyard_config_last_reload_successful')
    }
  }
  const start = await scrape()
  t.match(start, { success: 0, failure: 0, ok: 1 }, 'both results exported from the start; the boot load counts as a success')
  t.ok(start.at >= booted - 1 && start.at <= Date.now() / 1000, 'last success: the start')

  writeFileSync(file, 'pools: { web: { members: [] } }\n')
  t.match(await app.reload(), { ok: false })
  const failed = await scrape()
  t.match(failed, { success: 0, failure: 1, ok: 0, at: start.at }, 'a rejected file: counted, last result 0, the time stays')

  writeFileSync(file, good.replace('routes:', 'limits: { max_body_bytes: 2048 }\nroutes:'))
  const before = Date.now() / 1000
  t.match(await app.reload(), { ok: true })
  const applied = await scrape()
  t.match(applied, { success: 1, failure: 1, ok: 1 })
  t.ok(applied.at >= before - 0.001, 'last success: this reload')
})
