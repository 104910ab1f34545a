import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { alive, spawnCli } from '../fixtures/cli.js'
import { deadPort, startUpstream } from '../fixtures/upstream.js'
import { fetchOnce, fetchText, waitFor } from '../fixtures/proxy.js'

t.test('workers: 2 share the port; a SIGKILLed worker is replaced; reload and metrics reach every worker', async (t) => {
  const up = await startUpstream('up')
  t.teardown(() => up.close())
  const [proxyPort, adminPort] = [await deadPort(), await deadPort()]
  const dir = mkdtempSync(join(tmpdir(), 'sy-cluster-'))
  const file = join(dir, 'upstreams.yaml')
  const base = `
workers: 2
listen: { host: 127.0.0.1, port: ${proxyPort} }
admin: { port: ${adminPort} }
pools: { web: { members: [{ url: "${up.url}" }] } }
`
  writeFileSync(file, `${base}routes: [{ name: all, match: {}, pool: web }]\n`)
  const proc = spawnCli(['start', '--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  const proxy = `http://127.0.0.1:${proxyPort}`
  const admin = `http://127.0.0.1:${adminPort}`
  await waitFor(async () => (await fetchText(`${admin}/readyz`).catch(() => ({ status: 0 }))).status === 200, 15000, 'the cluster to be ready')

  const pools = JSON.parse((await fetchText(`${admin}/admin/pools`)).body)
  t.equal(pools.workers.length, 2)
  const victim = pools.workers[0].pid as number
  t.comment(`killing worker ${victim}`)
  process.kill(victim, 'SIGKILL')
  // Keep answering while the worker is replaced (new connections: those the dead worker held are gone with it).
  // A connection the primary hands to the dying worker before it learns of the death is lost
  // with it (node:cluster round-robin); every other request must be answered.
  let failed = 0
  let lastFailure = -1
  for (let i = 0; i < 100; i++) {
    const r = await fetchOnce(`${proxy}/x`).catch(() => ({ status: 0 }))
    if (r.status !== 200) { failed++; lastFailure = i }
  }
  t.comment(`requests sent 100 while a worker was replaced, failed ${failed}`)
  t.ok(failed <= 2, `at most the connections in flight to the killed worker fail (failed ${failed})`)
  t.ok(lastFailure < 10, 'the proxy keeps answering after the death is noticed')
  await waitFor(async () => {
    const p = JSON.parse((await fetchText(`${admin}/admin/pools`)).body)
    return p.workers.length === 2 && !p.workers.some((w: { pid: number }) => w.pid === victim)
  }, 10000, 'a replacement worker')
  t.notOk(alive(victim))
  t.comment('replaced')
  const metrics = (await fetchText(`${admin}/metrics`)).body
  t.match(metrics, /switchyard_worker_restarts_total 1/)
  t.match(metrics, /switchyard_requests_total\{route="all",pool="web",method="GET",code="200"\} \d+/, 'workers\' metrics are aggregated')

  writeFileSync(file, `${base}routes:\n  - { name: fresh, match: { path_prefix: /fresh }, pool: web, cache: { enabled: true } }\n  - { name: all, match: {}, pool: web }\n`)
  t.comment('reloading')
  const reload = await fetchText(`${admin}/admin/reload`, { method: 'POST' })
  t.equal(reload.status, 200, reload.body)
  t.match(JSON.parse(reload.body), { ok: true, workers: 2, changes: [{ path: 'routes[fresh]', class: 'live', detail: 'added (pool web)' }] }, 'validated once by the primary, switched in both workers')
  for (let i = 0; i < 20; i++) await fetchText(`${proxy}/fresh`)
  const after = (await fetchText(`${admin}/metrics`)).body
  t.match(after, /switchyard_requests_total\{route="fresh",pool="web",method="GET",code="200"\} 20/, 'the new route answered in every worker')

  // Purge reaches every worker (each has its own memory store).
  const purge = await fetchText(`${admin}/admin/cache/purge`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ host: '127.0.0.1', prefix: '/fresh' }) })
  t.equal(purge.status, 200, purge.body)
  t.equal(JSON.parse(purge.body).workers, 2)

  const workers = JSON.parse((await fetchText(`${admin}/admin/pools`)).body).workers.map((w: { pid: number }) => w.pid) as number[]
  t.comment('stopping')
  proc.child.kill('SIGTERM')
  const exit = await proc.exited
  t.equal(exit.code, 0)
  for (const pid of workers) t.notOk(alive(pid), `worker ${pid} is gone`)
})

t.test('workers: 2 on a port in use: exits 1 with the reason instead of hanging', async (t) => {
  const { createServer } = await import('node:net')
  const blocker = createServer()
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => { blocker.close() })
  const port = (blocker.address() as { port: number }).port
  const dir = mkdtempSync(join(tmpdir(), 'sy-cluster-busy-'))
  const file = join(dir, 'upstreams.yaml')
  writeFileSync(file, `workers: 2\nlisten: { host: 127.0.0.1, port: ${port} }\nadmin: { port: ${await deadPort()} }\npools: { web: { members: [{ url: "http://127.0.0.1:1" }] } }\nroutes: [{ name: all, match: {}, pool: web }]\n`)
  const proc = spawnCli(['start', '--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  const exit = await Promise.race([proc.exited, new Promise<{ code: number | null }>((r) => { setTimeout(() => r({ code: -1 }), 15000).unref() })])
  t.equal(exit.code, 1)
  t.match(proc.stderr(), /cannot start: proxy listener 127\.0\.0\.1:\d+: address already in use/)
})

t.test('workers: 2 with a self-signed TLS listener: every worker serves the same certificate', async (t) => {
  const up = await startUpstream('up')
  t.teardown(() => up.close())
  const [proxyPort, adminPort] = [await deadPort(), await deadPort()]
  const dir = mkdtempSync(join(tmpdir(), 'sy-cluster-tls-'))
  const file = join(dir, 'upstreams.yaml')
  writeFileSync(file, `
workers: 2
listen: { host: 127.0.0.1, port: ${proxyPort}, tls: { self_signed: true } }
admin: { port: ${adminPort} }
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: web }]
`)
  const proc = spawnCli(['start', '--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  await waitFor(async () => (await fetchText(`http://127.0.0.1:${adminPort}/readyz`).catch(() => ({ status: 0 }))).status === 200, 15000, 'the cluster to be ready')
  const fingerprints = new Set<string>()
  for (let i = 0; i < 8; i++) {
    fingerprints.add(await new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: proxyPort, servername: 'localhost', rejectUnauthorized: false }, () => {
        resolve(s.getPeerX509Certificate()?.fingerprint256 ?? '')
        s.end()
      })
      s.on('error', reject)
    }))
  }
  t.equal(fingerprints.size, 1, 'one certificate across 8 connections spread over both workers')
  const pools = JSON.parse((await fetchText(`http://127.0.0.1:${adminPort}/admin/pools`)).body)
  t.equal(pools.workers.length, 2)
  // Aggregated over the workers, gauges of state must not be summed.
  const metrics = (await fetchText(`http://127.0.0.1:${adminPort}/metrics`)).body
  const expiry = Number(/switchyard_tls_certificate_expiry_timestamp_seconds\{[^}]*\} (\S+)/.exec(metrics)?.[1])
  const notAfter = Date.parse(await new Promise<string>((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: proxyPort, servername: 'localhost', rejectUnauthorized: false }, () => { resolve(s.getPeerCertificate().valid_to); s.end() })
    s.on('error', reject)
  })) / 1000
  t.equal(expiry, notAfter, 'the certificate expiry is the certificate\'s notAfter, not the sum over workers')
  t.match(metrics, /switchyard_upstream_healthy\{pool="web",member="[^"]+"\} 1\n/, 'a healthy member reads 1, not the number of workers')
})
