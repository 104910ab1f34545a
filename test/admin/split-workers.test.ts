/**
 * Workers mode: split calls (promote, reset) reach every worker, and GET /admin/splits shows each
 * worker's view (guardrail state is per worker: each judges the traffic it served).
 */
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnCli } from '../fixtures/cli.js'
import { deadPort, startUpstream } from '../fixtures/upstream.js'
import { fetchOnce, fetchText, waitFor } from '../fixtures/proxy.js'

interface SplitView { name: string; promoted: string | null; variants: { name: string; share: number }[] }

t.test('workers: 2: promote and reset reach every worker; /admin/splits lists each', async (t) => {
  const a = await startUpstream('a')
  const b = await startUpstream('b')
  t.teardown(async () => { await a.close(); await b.close() })
  const [proxyPort, adminPort] = [await deadPort(), await deadPort()]
  const dir = mkdtempSync(join(tmpdir(), 'sy-split-workers-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'switchyard.yaml')
  writeFileSync(file, `
workers: 2
listen: { host: 127.0.0.1, port: ${proxyPort} }
admin: { port: ${adminPort} }
pools: { pa: { members: [{ url: "${a.url}" }] }, pb: { members: [{ url: "${b.url}" }] } }
routes:
  - name: exp
    match: {}
    split: { name: hero, variants: [{ name: old, pool: pa, weight: 50 }, { name: new, pool: pb, weight: 50 }] }
`)
  const proc = spawnCli(['start', '--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  const proxy = `http://127.0.0.1:${proxyPort}`
  const admin = `http://127.0.0.1:${adminPort}`
  await waitFor(async () => (await fetchText(`${admin}/readyz`).catch(() => ({ status: 0 }))).status === 200, 30000, 'the cluster to be ready')

  const promote = await fetchText(`${admin}/admin/splits/hero/variants/new/promote`, { method: 'POST' })
  t.equal(promote.status, 200, promote.body)
  t.match(JSON.parse(promote.body), { split: 'hero', action: 'promote', variant: 'new', promoted: 'new', workers: 2 })
  const view = JSON.parse((await fetchText(`${admin}/admin/splits`)).body) as { splits: SplitView[]; workers: { pid: number; splits: SplitView[] }[] }
  t.equal(view.workers.length, 2, 'one view per worker')
  for (const w of view.workers) t.match(w.splits[0], { name: 'hero', promoted: 'new', variants: [{ name: 'old', share: 0 }, { name: 'new', share: 1 }] }, `worker ${w.pid}`)
  // New clients on new connections, so both workers serve some: every one gets the promoted variant.
  for (let i = 0; i < 30; i++) t.equal((await fetchOnce(`${proxy}/x${i}`)).headers['x-switchyard-variant'], 'new')
  t.equal(a.hits, 0, 'no worker sent a client to the other variant')
  t.match((await fetchText(`${admin}/metrics`)).body, /switchyard_split_variant_weight_ratio\{split="hero",variant="new"\} 1\b/, 'the weight share is averaged over the workers, not summed')

  const reset = await fetchText(`${admin}/admin/splits/hero/reset`, { method: 'POST' })
  t.match(JSON.parse(reset.body), { promoted: null, workers: 2 })
  await waitFor(async () => { await fetchOnce(`${proxy}/y`); return a.hits > 0 }, 10000, 'a client drawn for the old variant again')
})
