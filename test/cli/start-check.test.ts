import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { alive, runCli, spawnCli } from '../fixtures/cli.js'
import { deadPort, startUpstream } from '../fixtures/upstream.js'
import { fetchText, waitFor } from '../fixtures/proxy.js'
import { writePair } from '../tls/tls-fixtures.js'

const dir = mkdtempSync(join(tmpdir(), 'sy-cli-'))
function file(name: string, text: string): string {
  const p = join(dir, name)
  writeFileSync(p, text)
  return p
}

t.test('check: ok and bad files, exit codes', async (t) => {
  const good = file('good.yaml', 'pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }\nroutes: [{ name: r, match: {}, pool: p }]\n')
  const ok = await runCli(['check', good])
  t.equal(ok.code, 0)
  t.match(ok.stdout, /good\.yaml: ok \(1 pools, 1 routes, 0 sidecars\)/)
  const bad = file('bad.yaml', 'pools: { p: { members: [{ url: "http://127.0.0.1:1", weight: 0 }] } }\nroutes: [{ name: r, match: {}, pool: q }]\n')
  const no = await runCli(['check', bad])
  t.equal(no.code, 1)
  t.match(no.stderr, /bad\.yaml:1:\d+: pools\.p\.members\[0\]\.weight: expected a number >= 1, got 0/)
  const usage = await runCli(['check', '--bogus'])
  t.equal(usage.code, 2)
  t.match(usage.stderr, /usage: switchyard check/)
  const unknown = await runCli(['frobnicate'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /unknown command "frobnicate"/)
})

t.test('check and start name a missing or mismatched TLS file', async (t) => {
  const a = await writePair(dir, 'check-a', ['a.test'])
  const b = await writePair(dir, 'check-b', ['b.test'])
  const routes = 'pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }\nroutes: [{ name: r, match: {}, pool: p }]\n'
  // Relative paths are read from the config file's directory.
  const good = file('tls-good.yaml', `listen: { port: 0, tls: { certificates: [{ cert: check-a.pem, key: check-a.key }] } }\n${routes}`)
  t.equal((await runCli(['check', good])).code, 0)
  const missing = file('tls-missing.yaml', `listen: { port: 0, tls: { certificates: [{ cert: nope.pem, key: check-a.key }] } }\n${routes}`)
  const m = await runCli(['check', missing])
  t.equal(m.code, 1)
  t.match(m.stderr, new RegExp(`listen\\.tls\\.certificates\\[0\\]\\.cert: .*${join(dir, 'nope.pem').replace(/[.]/g, '\\.')}`))
  const mismatch = file('tls-mismatch.yaml', `listen: { host: 127.0.0.1, port: ${await deadPort()}, tls: { certificates: [{ cert: check-a.pem, key: check-b.key }] } }\n${routes}`)
  const c = await runCli(['check', mismatch])
  t.equal(c.code, 1)
  t.match(c.stderr, /does not match/)
  t.match(c.stderr, new RegExp(b.key.replace(/[.]/g, '\\.')))
  const started = await runCli(['start', '--config', mismatch])
  t.equal(started.code, 1, 'start fails the same way, before listening')
  t.match(started.stderr, /does not match/)
  t.ok(a.cert)
})

t.test('start refuses a bad config before listening', async (t) => {
  const port = await deadPort()
  const bad = file('bad-start.yaml', `listen: { port: ${port}, host: 127.0.0.1 }\npools: {}\nroutes: [{ name: r, match: {}, pool: missing }]\n`)
  const r = await runCli(['start', '--config', bad])
  t.equal(r.code, 1)
  t.match(r.stderr, /bad-start\.yaml:3:\d+: routes\[0\]\.pool: unknown pool "missing" \(no pools are defined\)/)
  await t.rejects(fetchText(`http://127.0.0.1:${port}/`), 'nothing listens')
})

t.test('start: serves, restarts a killed sidecar, drains on SIGTERM, leaves no child behind', async (t) => {
  const [proxyPort, adminPort, whoamiPort] = [await deadPort(), await deadPort(), await deadPort()]
  const slow = await startUpstream('slow', (_req, res) => { setTimeout(() => res.end('finished'), 400) })
  t.teardown(() => slow.close())
  const cfg = file('start.yaml', `
workers: 1
listen: { host: 127.0.0.1, port: ${proxyPort} }
admin: { port: ${adminPort} }
limits: { shutdown_timeout_ms: 5000 }
pools:
  demo: { members: [{ url: "http://127.0.0.1:${whoamiPort}" }] }
  slow: { members: [{ url: "${slow.url}" }] }
routes:
  - { name: slow, match: { path_prefix: /slow }, pool: slow }
  - { name: demo, match: {}, pool: demo }
sidecars:
  - { name: who, command: switchyard, args: [whoami, --port, "${whoamiPort}", --name, demo-1], restart: { initial_delay_ms: 50 } }
`)
  const proc = spawnCli(['start', '--config', cfg])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  const proxy = `http://127.0.0.1:${proxyPort}`
  const admin = `http://127.0.0.1:${adminPort}`
  await waitFor(async () => (await fetchText(`${proxy}/`).catch(() => ({ status: 0, body: '' }))).body.startsWith('Name: demo-1'), 30000, 'the demo backend through the proxy')

  const before = JSON.parse((await fetchText(`${admin}/admin/sidecars`)).body).sidecars[0]
  t.equal(before.state, 'running')
  process.kill(before.pid, 'SIGKILL')
  await waitFor(async () => {
    const s = JSON.parse((await fetchText(`${admin}/admin/sidecars`)).body).sidecars[0]
    return s.state === 'running' && s.pid !== before.pid && s.restarts === 1
  }, 10000, 'the sidecar to be restarted')
  const after = JSON.parse((await fetchText(`${admin}/admin/sidecars`)).body).sidecars[0]
  t.match((await fetchText(`${admin}/metrics`)).body, /switchyard_sidecar_restarts_total\{sidecar="who"\} 1/)
  await waitFor(async () => (await fetchText(`${proxy}/`).catch(() => ({ status: 0 }))).status === 200, 10000, 'the restarted backend')

  // A request in flight when SIGTERM arrives still completes.
  const inflight = fetchText(`${proxy}/slow`)
  await waitFor(() => slow.hits === 1, 5000, 'the slow request to reach the upstream')
  proc.child.kill('SIGTERM')
  const r = await inflight
  t.equal(r.status, 200)
  t.equal(r.body, 'finished')
  const exit = await proc.exited
  t.equal(exit.code, 0, 'exit code 0 after a graceful shutdown')
  await waitFor(() => !alive(after.pid), 5000, 'the sidecar to be gone')
  t.notOk(alive(after.pid), 'no orphaned sidecar')
})

t.test('check: schema and reference problems together, as the README shows them', async (t) => {
  const sub = mkdtempSync(join(tmpdir(), 'sy-readme-'))
  writeFileSync(join(sub, 'upstreams.yaml'), `pools:
  web: { members: [{ url: "http://127.0.0.1:9001" }] }
  web-next: { members: [{ url: "http://127.0.0.1:9002" }] }
routes:
  - pool: wbe
    name: api
    match: { path_prefix: /api }
  - { name: home, match: { path_prefix: / }, pool: web }
  - name: beta
    split: { name: homepage, variants: [
      { name: control, pool: web-next, weight: 90 },
     { name: next, pool: web, weight: -5 } ] }
`)
  const r = await runCli(['check'], { env: { SWITCHYARD_CONFIG: join(sub, 'upstreams.yaml') } })
  t.equal(r.code, 1)
  t.equal(r.stderr, `invalid configuration (2 problems):
  ${join(sub, 'upstreams.yaml')}:5:11: routes[0].pool: unknown pool "wbe" (known pools: web, web-next)
  ${join(sub, 'upstreams.yaml')}:12:39: routes[2].split.variants[1].weight: expected a number >= 0, got -5
`)
  const empty = file('empty.yaml', 'workers:\npools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }\nroutes: [{ name: r, match: {}, pool: p }]\n')
  const e = await runCli(['check', empty])
  t.equal(e.code, 1, 'an empty value is not ok')
  t.match(e.stderr, /empty\.yaml:1:1: workers: expected a value; remove the key to use the default 0/)
  const two = await runCli(['check', empty, empty])
  t.equal(two.code, 2, 'one FILE at most')
  const flag = await runCli(['check', '--config', empty])
  t.equal(flag.code, 1, '--config FILE, as start takes it')
  t.match(flag.stderr, /empty\.yaml:1:1: workers/)
  t.equal((await runCli(['check', '-c', empty, empty])).code, 2, 'FILE and --config together: a usage error')
})
