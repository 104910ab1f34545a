/**
 * /readyz and the drain, on one app built in the test: readiness needs the proxy listener
 * bound, the sidecars spawned and the first round of health checks finished; a graceful
 * shutdown answers requests on kept-alive connections (200 with Connection: close, never 503
 * or a reset) and lets the in-flight ones finish before anything closes.
 */
import t from 'tap'
import { pino } from 'pino'
import { Client } from 'undici'
import { buildApp } from '../../src/app.js'
import { parseConfig } from '../../src/config/load.js'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, waitFor } from '../fixtures/proxy.js'
import { alive } from '../fixtures/cli.js'

t.test('readyz: 503 until listening, sidecars spawned and the first health checks done; 503 again while draining', async (t) => {
  const heldChecks: Array<() => void> = []
  const heldSlow: Array<() => void> = []
  const up = await startUpstream('up', (req, res) => {
    if (req.url === '/health') heldChecks.push(() => res.end('ok'))
    else if (req.url === '/slow') heldSlow.push(() => res.end('slow'))
    else res.end('fast')
  })
  t.teardown(() => up.close())
  const config = parseConfig(`
limits: { shutdown_timeout_ms: 20000 }
pools:
  web:
    members: [{ url: "${up.url}" }]
    health_check: { path: /health, interval_ms: 60000, timeout_ms: 30000 }
routes: [{ name: all, match: {}, pool: web }]
sidecars:
  - { name: idle, command: ${JSON.stringify(process.execPath)}, args: ["-e", "setInterval(() => {}, 1e9)"] }
`, 'ready.yaml', {})
  const app = await buildApp(config, { logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }), sidecars: true })
  t.teardown(() => app.close())
  const adminUrl = await app.admin.listen({ host: '127.0.0.1', port: 0 })
  const readyz = async (): Promise<number> => (await fetchText(`${adminUrl}/readyz`)).status

  t.equal(await readyz(), 503, 'not listening yet')
  const url = (await app.listeners.listen({ host: '127.0.0.1', port: 0 }))[0]
  app.setReady(true)
  await waitFor(() => heldChecks.length === 1, 5000, 'the first health check to reach the upstream')
  t.equal(await readyz(), 503, 'listening, but the first health check has not answered')
  heldChecks[0]()
  await app.checked()
  t.equal(await readyz(), 503, 'health checked, but the sidecar is not spawned')
  app.supervisor?.start()
  await app.supervisor?.spawned()
  t.equal(await readyz(), 200, 'listening, sidecar spawned, first round of checks done')

  // Drain: one client holds an idle kept-alive connection, another a request in flight.
  const idle = new Client(url)
  const busy = new Client(url)
  t.teardown(async () => { await idle.close(); await busy.close() })
  const first = await idle.request({ path: '/fast', method: 'GET' })
  t.equal(await first.body.text(), 'fast')
  t.not(first.headers.connection, 'close', 'kept alive before the drain')
  const slow = busy.request({ path: '/slow', method: 'GET' })
  await waitFor(() => heldSlow.length === 1, 5000, 'the slow request to reach the upstream')

  const sidecarPid = app.supervisor?.list()[0]?.pid as number
  let stopped = false
  const stopping = app.shutdown('test').then(() => { stopped = true })
  t.equal(await readyz(), 503, 'not ready while draining')
  await t.rejects(fetchText(`${url}/fast`), 'no new connection is accepted')
  const again = await idle.request({ path: '/fast', method: 'GET' })
  t.equal(again.statusCode, 200, 'a request on the idle kept-alive connection is answered (not 503)')
  t.equal(await again.body.text(), 'fast')
  t.equal(again.headers.connection, 'close', 'with Connection: close, so the client moves on')
  t.notOk(stopped, 'still draining: a request is in flight')
  heldSlow[0]()
  const r = await slow
  t.equal(r.statusCode, 200)
  t.equal(await r.body.text(), 'slow', 'the request in flight finished')
  t.equal(r.headers.connection, 'close')
  await stopping
  t.notOk(alive(sidecarPid), 'the sidecar was stopped by the shutdown')
})

t.test('shutdown deadline: connections still busy at limits.shutdown_timeout_ms are closed', async (t) => {
  const up = await startUpstream('up', () => { /* never answers */ })
  t.teardown(() => up.close())
  const config = parseConfig(`
limits: { shutdown_timeout_ms: 200 }
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: web }]
`, 'deadline.yaml', {})
  const app = await buildApp(config, { logger: pino({ level: 'silent' }) })
  const url = (await app.listeners.listen({ host: '127.0.0.1', port: 0 }))[0]
  const client = new Client(url)
  t.teardown(() => client.destroy())
  const stuck = client.request({ path: '/', method: 'GET' }).then(() => 'answered', (err: Error & { code?: string }) => err.code ?? err.message)
  await waitFor(() => up.hits === 1, 5000, 'the request to reach the upstream')
  await app.shutdown('test')
  t.equal(await stuck, 'UND_ERR_SOCKET', 'the stuck request was cut at the deadline')
})
