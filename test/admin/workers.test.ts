/**
 * Workers mode: the primary fans a drain out to every worker, a replacement worker starts with
 * the member drained, and GET /admin/status (and the page) add the workers' state up.
 */
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnCli } from '../fixtures/cli.js'
import { deadPort, startUpstream } from '../fixtures/upstream.js'
import { fetchOnce, fetchText, waitFor } from '../fixtures/proxy.js'
import { findChromium, renderPage, sectionText } from './chromium.js'

interface Member { name: string; drained: boolean; healthy: boolean; requests: number; workers: number; healthy_workers: number }
interface Status { mode: string; workers: number; pools: { name: string; members: Member[] }[]; reloads: { ok: boolean }[]; splits: unknown[] }

t.test('workers: 2: drain reaches every worker and new ones; the status adds the workers up', async (t) => {
  const a = await startUpstream('a')
  const b = await startUpstream('b')
  t.teardown(async () => { await a.close(); await b.close() })
  const [proxyPort, adminPort] = [await deadPort(), await deadPort()]
  const dir = mkdtempSync(join(tmpdir(), 'sy-admin-workers-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'switchyard.yaml')
  const config = (connectMs: number): string => `
workers: 2
listen: { host: 127.0.0.1, port: ${proxyPort} }
admin: { port: ${adminPort} }
pools: { web: { timeouts: { connect_ms: ${connectMs} }, members: [{ name: a, url: "${a.url}" }, { name: b, url: "${b.url}" }] } }
routes: [{ name: all, match: {}, pool: web }]
`
  writeFileSync(file, config(2000))
  const proc = spawnCli(['start', '--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  const proxy = `http://127.0.0.1:${proxyPort}`
  const admin = `http://127.0.0.1:${adminPort}`
  await waitFor(async () => (await fetchText(`${admin}/readyz`).catch(() => ({ status: 0 }))).status === 200, 30000, 'the cluster to be ready')
  const status = async (): Promise<Status> => JSON.parse((await fetchText(`${admin}/admin/status`)).body) as Status
  const web = (s: Status): Member[] => s.pools.find((p) => p.name === 'web')?.members ?? []

  const drain = await fetchText(`${admin}/admin/pools/web/members/b/drain`, { method: 'POST' })
  t.equal(drain.status, 200, drain.body)
  t.match(JSON.parse(drain.body), { pool: 'web', member: 'b', drained: true, workers: 2 })
  t.equal((await fetchText(`${admin}/admin/pools/web/members/zz/drain`, { method: 'POST' })).status, 404)

  // New connections, so both workers take some.
  for (let i = 0; i < 40; i++) t.equal((await fetchOnce(`${proxy}/x${i}`)).status, 200)
  t.equal(b.hits, 0, 'no worker sent anything to the drained member')
  const pools = JSON.parse((await fetchText(`${admin}/admin/pools`)).body) as { workers: { pid: number; pools: { web: { members: { name: string; drained: boolean }[] } } }[] }
  t.equal(pools.workers.length, 2)
  for (const w of pools.workers) t.equal(w.pools.web.members.find((m) => m.name === 'b')?.drained, true, `worker ${w.pid}: b drained`)
  t.match((await fetchText(`${admin}/metrics`)).body, /switchyard_upstream_member_drained\{pool="web",member="b"\} 1/, 'the metric is 1, not summed over workers')

  let s = await status()
  t.equal(s.mode, 'workers')
  t.equal(s.workers, 2)
  const [ma, mb] = web(s)
  t.match(ma, { name: 'a', drained: false, healthy: true, workers: 2, healthy_workers: 2 })
  t.match(mb, { name: 'b', drained: true, workers: 2 })
  t.equal(ma.requests, 40, 'member requests are the workers\' sum')

  // A replacement worker drains b before it serves.
  const victim = pools.workers[0].pid
  process.kill(victim, 'SIGKILL')
  await waitFor(async () => {
    const p = JSON.parse((await fetchText(`${admin}/admin/pools`)).body) as { workers: { pid: number }[] }
    return p.workers.length === 2 && !p.workers.some((w) => w.pid === victim)
  }, 15000, 'a replacement worker')
  const replaced = JSON.parse((await fetchText(`${admin}/admin/pools`)).body) as typeof pools
  for (const w of replaced.workers) t.equal(w.pools.web.members.find((m) => m.name === 'b')?.drained, true, `worker ${w.pid}: b drained`)
  for (let i = 0; i < 40; i++) await fetchOnce(`${proxy}/y${i}`).catch(() => undefined)
  t.equal(b.hits, 0, 'still nothing to b with the replacement worker')

  // A reload keeps it drained and shows in the status.
  writeFileSync(file, config(3000))
  t.equal((await fetchText(`${admin}/admin/reload`, { method: 'POST' })).status, 200)
  s = await status()
  t.equal(web(s)[1].drained, true, 'drained after the reload')
  t.match(s.reloads, [{ ok: true }])

  const chromium = findChromium()
  if (chromium !== undefined) {
    const dom = await renderPage(chromium, `${admin}/`)
    t.match(dom, /workers mode: 2 workers/)
    t.match(sectionText(dom, 'pools'), /b http:\/\/127\.0\.0\.1:\d+ drained healthy/, 'the page shows the drained member')
    t.match(sectionText(dom, 'reloads'), /applied/)
  } else {
    t.comment('no chromium binary: the page is not rendered in workers mode')
  }

  const undrain = await fetchText(`${admin}/admin/pools/web/members/b/undrain`, { method: 'POST' })
  t.match(JSON.parse(undrain.body), { drained: false, workers: 2 })
  for (let i = 0; i < 40; i++) await fetchOnce(`${proxy}/z${i}`)
  t.ok(b.hits > 0, `undrained: b serves again (${b.hits})`)

  proc.child.kill('SIGTERM')
  t.equal((await proc.exited).code, 0)
})
