/**
 * SIGTERM to one worker drains it while the others serve: 16 keep-alive clients loop over GETs
 * through `workers: 2`; one worker gets SIGTERM mid-load. No request may fail (clients do not
 * retry), and the primary replaces the drained worker without counting a crash. Workers never
 * read the config file: the replacement starts even though the file is broken by then.
 */
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from 'undici'
import { alive, spawnCli } from '../fixtures/cli.js'
import { deadPort, startUpstream } from '../fixtures/upstream.js'
import { fetchText, waitFor } from '../fixtures/proxy.js'

const CLIENTS = 16
const PER_CLIENT = 250

t.test('workers: 2, 16 keep-alive clients, SIGTERM one worker mid-load: nothing fails, the worker is replaced', async (t) => {
  const up = await startUpstream('up', (_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok') })
  t.teardown(() => up.close())
  const [proxyPort, adminPort] = [await deadPort(), await deadPort()]
  const dir = mkdtempSync(join(tmpdir(), 'sy-drain-'))
  const file = join(dir, 'upstreams.yaml')
  writeFileSync(file, `
workers: 2
listen: { host: 127.0.0.1, port: ${proxyPort} }
admin: { port: ${adminPort} }
logging: { level: warn }
limits: { shutdown_timeout_ms: 10000 }
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: web }]
`)
  const proc = spawnCli(['start', '--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  const admin = `http://127.0.0.1:${adminPort}`
  await waitFor(async () => (await fetchText(`${admin}/readyz`).catch(() => ({ status: 0 }))).status === 200, 20000, 'the cluster to be ready')
  const before = JSON.parse((await fetchText(`${admin}/admin/pools`)).body).workers.map((w: { pid: number }) => w.pid) as number[]
  t.equal(before.length, 2)
  const victim = before[0]

  // Workers get their config from the primary: from now on the file is unreadable as a config.
  writeFileSync(file, 'this: [is not, a valid config\n')

  let sent = 0
  let done = 0
  let signalled = false
  const failures: string[] = []
  const statuses = new Map<number, number>()
  let closing = 0
  const clients = Array.from({ length: CLIENTS }, () => new Client(`http://127.0.0.1:${proxyPort}`, { pipelining: 1 }))
  t.teardown(() => Promise.all(clients.map((c) => c.close())))
  const loop = async (c: Client): Promise<void> => {
    for (let i = 0; i < PER_CLIENT; i++) {
      sent++
      try {
        const res = await c.request({ path: `/x/${i}`, method: 'GET' })
        const body = await res.body.text()
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
        if (res.headers.connection === 'close') closing++
        if (res.statusCode !== 200 || body !== 'ok') failures.push(`${res.statusCode} ${body.slice(0, 80)}`)
      } catch (err) {
        const e = err as Error & { code?: string }
        failures.push(`${e.code ?? e.name}: ${e.message}`)
      }
      done++
      // Mid-load: a quarter of the requests are done.
      if (!signalled && done >= (CLIENTS * PER_CLIENT) / 4) {
        signalled = true
        process.kill(victim, 'SIGTERM')
      }
    }
  }
  await Promise.all(clients.map(loop))
  t.comment(`requests sent ${sent}, failed ${failures.length}; statuses ${JSON.stringify(Object.fromEntries(statuses))}; answers with Connection: close ${closing}`)
  t.ok(signalled, 'the worker was signalled mid-load')
  t.equal(sent, CLIENTS * PER_CLIENT)
  t.same(failures.slice(0, 10), [], `no request failed (${failures.length} of ${sent})`)
  t.ok(closing > 0, 'the draining worker told its clients to move (Connection: close)')

  await waitFor(() => !alive(victim), 15000, 'the drained worker to exit')
  await waitFor(async () => {
    const p = JSON.parse((await fetchText(`${admin}/admin/pools`)).body) as { workers: { pid: number }[] }
    return p.workers.length === 2 && !p.workers.some((w) => w.pid === victim)
  }, 20000, 'a replacement worker')
  const after = JSON.parse((await fetchText(`${admin}/admin/pools`)).body).workers.map((w: { pid: number }) => w.pid) as number[]
  t.comment(`workers before ${before.join(',')}, after ${after.join(',')}`)
  t.ok(after.includes(before[1]), 'the other worker kept serving')
  t.equal((await fetchText(`${admin}/readyz`)).status, 200, 'ready again')
  t.match((await fetchText(`${admin}/metrics`)).body, /switchyard_worker_restarts_total 0/, 'a drain is not counted as a crash')

  proc.child.kill('SIGTERM')
  t.equal((await proc.exited).code, 0)
  for (const pid of after) t.notOk(alive(pid), `worker ${pid} is gone`)
})
