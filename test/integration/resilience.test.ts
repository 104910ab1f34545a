import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startUpstream, type Upstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, waitFor } from '../fixtures/proxy.js'

/** A bounded loop of GETs with `concurrency` workers; returns status counts and transport errors. */
async function load(url: string, total: number, concurrency: number, during?: (done: number) => Promise<void> | void): Promise<{ ok: number; failed: number; statuses: Record<number, number>; errors: string[] }> {
  let next = 0
  let done = 0
  const statuses: Record<number, number> = {}
  const errors: string[] = []
  let fired = false
  const worker = async (): Promise<void> => {
    while (next < total) {
      next++
      try {
        const r = await fetchText(url)
        statuses[r.status] = (statuses[r.status] ?? 0) + 1
      } catch (err) {
        errors.push((err as Error).message)
      }
      done++
      if (!fired && during !== undefined && done >= total / 3) {
        fired = true
        await during(done)
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const ok = statuses[200] ?? 0
  return { ok, failed: total - ok, statuses, errors }
}

function metric(text: string, re: RegExp): number {
  let sum = 0
  for (const line of text.split('\n')) if (re.test(line)) sum += Number(line.split(' ').pop())
  return sum
}

t.test('a member killed mid-traffic: no idempotent request fails, it is marked down, and used again when back', async (t) => {
  const a = await startUpstream('a')
  let b: Upstream = await startUpstream('b')
  const bPort = b.port
  const proxy = await startProxy(`
pools:
  web:
    members: [{ url: "${a.url}" }, { url: "${b.url}" }]
    health_check: { path: /health, interval_ms: 100, timeout_ms: 200, rise: 2, fall: 1 }
    outlier: { base_ejection_ms: 300 }
routes: [{ name: all, match: {}, pool: web }]
`)
  t.teardown(async () => { await proxy.close(); await a.close(); await b.close() })

  let killedAt = 0
  const result = await load(`${proxy.url}/work`, 600, 8, async () => {
    killedAt = b.hits
    await b.close()
  })
  t.equal(result.failed, 0, `requests sent 600, failed ${result.failed} (${JSON.stringify(result.statuses)})`)
  t.same(result.errors, [])
  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  const retried = metric(metrics, /^switchyard_retries_total\{route="all"/)
  t.comment(`member b killed after ${killedAt} of its requests; retries: ${retried}`)
  await waitFor(() => proxy.app.runtime().pools.get('web')!.members[1].available === false, 2000, 'b marked down')
  t.match(metrics, /switchyard_upstream_healthy\{pool="web",member="127\.0\.0\.1:\d+"\} 0/)

  // Back on the same port: two passing checks (rise: 2) bring it back into rotation.
  b = await startUpstream('b', undefined, bPort)
  await waitFor(() => proxy.app.runtime().pools.get('web')!.members[1].available, 3000, 'b back up')
  for (let i = 0; i < 10; i++) await fetchText(`${proxy.url}/again`)
  t.ok(b.received.some((r) => r.url === '/again'), 'the returned member receives traffic again')
})

t.test('the retry budget caps retries when every member fails', async (t) => {
  const bad = (name: string): Promise<Upstream> => startUpstream(name, (_req, res) => { res.writeHead(503).end('down') })
  const a = await bad('a')
  const b = await bad('b')
  const proxy = await startProxy(`
pools:
  web:
    members: [{ url: "${a.url}" }, { url: "${b.url}" }]
    outlier: { consecutive_failures: 0 }
    retry_budget: { percent: 20, min_per_second: 0, window_ms: 10000 }
routes: [{ name: all, match: {}, pool: web, retries: { attempts: 2 } }]
`)
  t.teardown(async () => { await proxy.close(); await a.close(); await b.close() })
  const r = await load(`${proxy.url}/`, 100, 4)
  t.equal(r.statuses[503], 100, 'every client request gets the upstream\'s 503')
  const upstreamRequests = a.hits + b.hits
  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  t.comment(`client requests 100, upstream requests ${upstreamRequests}, retries ${metric(metrics, /^switchyard_retries_total/)}, budget refusals ${metric(metrics, /^switchyard_retry_budget_exhausted_total/)}`)
  t.ok(upstreamRequests <= 100 + 20 + 1, `retries stay within 20% (upstream saw ${upstreamRequests}; without a budget it would be 300)`)
  t.ok(upstreamRequests > 100, 'some retries were made')
  t.ok(metric(metrics, /^switchyard_retry_budget_exhausted_total\{pool="web"\}/) > 0)
})

t.test('POST is not retried unless the route opts in; a small PUT body is replayed', async (t) => {
  let aBodies: string[] = []
  const a = await startUpstream('a', (req, res) => { req.resume(); req.on('end', () => res.writeHead(503).end('no')) })
  const b = await startUpstream('b', (req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => { aBodies.push(body); res.end(`got ${body}`) })
  })
  const proxy = await startProxy(`
pools:
  web: { balancer: round_robin, members: [{ url: "${a.url}" }, { url: "${b.url}" }], outlier: { consecutive_failures: 0 } }
routes: [{ name: all, match: {}, pool: web }]
`)
  t.teardown(async () => { await proxy.close(); await a.close(); await b.close() })
  // round-robin starts at a: the POST goes to a once and its 503 comes back.
  const post = await fetchText(`${proxy.url}/`, { method: 'POST', body: 'payload' })
  t.equal(post.status, 503)
  t.equal(a.hits, 1)
  aBodies = []
  // The PUT goes to b first (round-robin); send another to hit a and be retried on b.
  await fetchText(`${proxy.url}/`, { method: 'PUT', body: 'first' })
  const put = await fetchText(`${proxy.url}/`, { method: 'PUT', body: 'replayed' })
  t.equal(put.status, 200)
  t.equal(put.body, 'got replayed', 'the body was replayed on the other member')
  t.equal(a.hits, 2)
})

t.test('outlier detection ejects a member that keeps failing', async (t) => {
  const good = await startUpstream('good')
  const flaky = await startUpstream('flaky', (_req, res) => { res.writeHead(500).end('boom') })
  const proxy = await startProxy(`
pools:
  web:
    members: [{ url: "${good.url}" }, { url: "${flaky.url}" }]
    outlier: { consecutive_failures: 3, base_ejection_ms: 60000 }
routes: [{ name: all, match: {}, pool: web, retries: { attempts: 0 } }]
`)
  t.teardown(async () => { await proxy.close(); await good.close(); await flaky.close() })
  for (let i = 0; i < 6; i++) await fetchText(`${proxy.url}/`)
  t.equal(flaky.hits, 3, 'ejected after three consecutive 500s')
  for (let i = 0; i < 20; i++) t.equal((await fetchText(`${proxy.url}/`)).status, 200)
  t.equal(flaky.hits, 3, 'no traffic while ejected')
  const pools = JSON.parse((await fetchText(`${proxy.adminUrl}/admin/pools`)).body)
  t.ok(pools.pools.web.members[1].ejected_for_ms > 0)
  t.match((await fetchText(`${proxy.adminUrl}/metrics`)).body, /switchyard_upstream_ejections_total\{pool="web",member="127\.0\.0\.1:\d+"\} 1/)
})

t.test('reload under load loses nothing; a bad reload keeps the running config', async (t) => {
  const a = await startUpstream('a')
  const b = await startUpstream('b')
  const dir = mkdtempSync(join(tmpdir(), 'sy-reload-'))
  const file = join(dir, 'upstreams.yaml')
  const v1 = `
pools:
  web: { members: [{ url: "${a.url}" }] }
routes: [{ name: all, match: {}, pool: web }]
`
  const proxy = await startProxy(v1, { configPath: file })
  t.teardown(async () => { await proxy.close(); await a.close(); await b.close() })

  const r = await load(`${proxy.url}/x`, 1500, 8, async () => {
    writeFileSync(file, `
pools:
  web: { members: [{ url: "${a.url}" }, { url: "${b.url}" }] }
  other: { members: [{ url: "${b.url}" }] }
routes:
  - { name: new, match: { path_prefix: /new }, pool: other }
  - { name: all, match: {}, pool: web }
`)
    const res = await fetchText(`${proxy.adminUrl}/admin/reload`, { method: 'POST' })
    t.equal(res.status, 200, res.body)
  })
  t.equal(r.failed, 0, `1500 requests during a reload: ${JSON.stringify(r.statuses)}`)
  t.same(r.errors, [], 'no connection was refused or reset')
  t.ok(b.hits > 0, 'the new member took traffic after the reload')
  t.equal(JSON.parse((await fetchText(`${proxy.url}/new`)).body).name, 'b', 'the new route is live')

  writeFileSync(file, 'pools: { web: { members: [] } }\nroutes: []\n')
  const bad = await fetchText(`${proxy.adminUrl}/admin/reload`, { method: 'POST' })
  t.equal(bad.status, 422)
  t.match(JSON.parse(bad.body).error, /upstreams\.yaml:1:\d+: pools\.web\.members: expected at least 1 item/)
  t.equal(JSON.parse((await fetchText(`${proxy.url}/new`)).body).name, 'b', 'the old config still serves')
})
