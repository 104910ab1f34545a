/**
 * Draining a member by hand: POST /admin/pools/<pool>/members/<member>/drain. A drained member
 * gets no new request from any balancer or split while its requests in flight finish; undrain
 * brings it back; the state survives a reload that keeps the member and shows in /admin/pools
 * and in switchyard_upstream_member_drained. Unknown names answer 404.
 */
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fetchText, startProxy, waitFor } from '../fixtures/proxy.js'
import { startUpstream, type Upstream } from '../fixtures/upstream.js'
import type { TapTest } from '../fixtures/security.js'

async function upstreams(t: TapTest, names: string[]): Promise<Upstream[]> {
  const ups = await Promise.all(names.map((n) => startUpstream(n)))
  t.teardown(async () => { for (const u of ups) await u.close() })
  return ups
}

const post = (url: string, headers: Record<string, string> = {}) => fetchText(url, { method: 'POST', headers })

function poolMember(pools: string, pool: string, member: string): Record<string, unknown> {
  const p = (JSON.parse(pools) as { pools: Record<string, { members: Record<string, unknown>[] }> }).pools[pool]
  return p.members.find((m) => m.name === member) as Record<string, unknown>
}

for (const balancer of ['round_robin', 'weighted', 'least_request', 'random', 'hash']) {
  t.test(`${balancer}: a drained member gets none of the new requests; undrain brings it back`, async (t) => {
    const [a, b, c] = await upstreams(t, ['a', 'b', 'c'])
    const proxy = await startProxy(`
pools:
  web:
    balancer: ${balancer}
    ${balancer === 'hash' ? 'hash_on: { header: x-user }' : ''}
    members: [{ name: a, url: "${a.url}" }, { name: b, url: "${b.url}", weight: 3 }, { name: c, url: "${c.url}" }]
routes: [{ name: all, match: {}, pool: web }]
`)
    t.teardown(() => proxy.close())
    const send = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const r = await fetchText(`${proxy.url}/x${i}`, { headers: { 'x-user': `user-${i}` } })
        t.equal(r.status, 200)
      }
    }
    const drain = await post(`${proxy.adminUrl}/admin/pools/web/members/b/drain`)
    t.equal(drain.status, 200, drain.body)
    t.match(JSON.parse(drain.body), { pool: 'web', member: 'b', drained: true, changed: true })
    const again = JSON.parse((await post(`${proxy.adminUrl}/admin/pools/web/members/b/drain`)).body)
    t.equal(again.changed, false, 'draining a drained member changes nothing')

    await send(60)
    t.equal(b.hits, 0, 'the drained member got 0 of 60 requests')
    t.equal(a.hits + c.hits, 60, 'the others got them all')
    const pools = (await fetchText(`${proxy.adminUrl}/admin/pools`)).body
    t.equal(poolMember(pools, 'web', 'b').drained, true, '/admin/pools shows drained: true')
    t.equal(poolMember(pools, 'web', 'a').drained, false)
    const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
    t.match(metrics, /switchyard_upstream_member_drained\{pool="web",member="b"\} 1/)
    t.match(metrics, /switchyard_upstream_member_drained\{pool="web",member="a"\} 0/)

    const undrain = await post(`${proxy.adminUrl}/admin/pools/web/members/b/undrain`)
    t.equal(undrain.status, 200, undrain.body)
    t.match(JSON.parse(undrain.body), { drained: false, changed: true })
    await send(60)
    t.ok(b.hits > 0, `undrained, b gets requests again (${b.hits} of 60)`)
    t.match((await fetchText(`${proxy.adminUrl}/metrics`)).body, /switchyard_upstream_member_drained\{pool="web",member="b"\} 0/)
  })
}

t.test('splits: a drained member of a variant\'s pool gets none of the split\'s requests', async (t) => {
  const [a1, a2, b1] = await upstreams(t, ['a1', 'a2', 'b1'])
  const proxy = await startProxy(`
pools:
  pa: { members: [{ name: a1, url: "${a1.url}" }, { name: a2, url: "${a2.url}" }] }
  pb: { members: [{ name: b1, url: "${b1.url}" }] }
routes:
  - name: exp
    match: {}
    split: { name: hero, variants: [{ name: old, pool: pa, weight: 50 }, { name: new, pool: pb, weight: 50 }] }
`)
  t.teardown(() => proxy.close())
  t.equal((await post(`${proxy.adminUrl}/admin/pools/pa/members/a1/drain`)).status, 200)
  for (let i = 0; i < 40; i++) t.equal((await fetchText(`${proxy.url}/p`, { headers: { 'x-switchyard-variant': 'old' } })).status, 200)
  for (let i = 0; i < 20; i++) t.equal((await fetchText(`${proxy.url}/p`)).status, 200)
  t.equal(a1.hits, 0, 'a1 drained: none of the split\'s requests')
  t.ok(a2.hits >= 40, 'its pool mate took variant old')
})

t.test('a request in flight on a member being drained completes; new ones go elsewhere', async (t) => {
  const held: (() => void)[] = []
  const hold = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, self: Upstream): void => {
    if (req.url === '/slow') held.push(() => res.end(`slow from ${self.name}`))
    else res.end(self.name)
  }
  const a = await startUpstream('a', hold)
  const b = await startUpstream('b', hold)
  t.teardown(async () => { await a.close(); await b.close() })
  const proxy = await startProxy(`
pools: { web: { members: [{ name: a, url: "${a.url}" }, { name: b, url: "${b.url}" }] } }
routes: [{ name: all, match: {}, pool: web, timeout_ms: 20000 }]
`)
  t.teardown(() => proxy.close())
  const slow = fetchText(`${proxy.url}/slow`)
  await waitFor(() => held.length === 1, 5000, 'the slow request to reach a member')
  const holder = a.hits === 1 ? 'a' : 'b'
  const other = holder === 'a' ? b : a
  const drain = await post(`${proxy.adminUrl}/admin/pools/web/members/${holder}/drain`)
  t.equal(drain.status, 200)
  t.equal(JSON.parse(drain.body).in_flight, 1, 'the answer tells the requests still in flight on it')
  t.equal(poolMember((await fetchText(`${proxy.adminUrl}/admin/pools`)).body, 'web', holder).in_flight, 1)
  for (let i = 0; i < 10; i++) t.equal((await fetchText(`${proxy.url}/fast`)).body, other.name, 'new requests go to the other member')
  held[0]()
  const done = await slow
  t.equal(done.status, 200)
  t.equal(done.body, `slow from ${holder}`, 'the request in flight finished on the drained member')
})

t.test('every member drained: 503, and the answer warns', async (t) => {
  const [a] = await upstreams(t, ['a'])
  const proxy = await startProxy(`
pools: { web: { members: [{ name: a, url: "${a.url}" }] } }
routes: [{ name: all, match: {}, pool: web, retries: { attempts: 0 } }]
`)
  t.teardown(() => proxy.close())
  const r = await post(`${proxy.adminUrl}/admin/pools/web/members/a/drain`)
  t.match(JSON.parse(r.body), { drained: true, warning: /every member of this pool is drained/ })
  t.equal((await fetchText(`${proxy.url}/x`)).status, 503)
  t.equal(a.hits, 0)
  await post(`${proxy.adminUrl}/admin/pools/web/members/a/undrain`)
  t.equal((await fetchText(`${proxy.url}/x`)).status, 200)
})

t.test('drained stays drained across a reload that keeps the member; a member removed and added back is not drained', async (t) => {
  const [a, b, c] = await upstreams(t, ['a', 'b', 'c'])
  const dir = mkdtempSync(join(tmpdir(), 'sy-drain-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'upstreams.yaml')
  const config = (members: Upstream[], connectMs: number): string => `
pools: { web: { timeouts: { connect_ms: ${connectMs} }, members: [${members.map((u) => `{ name: ${u.name}, url: "${u.url}" }`).join(', ')}] } }
routes: [{ name: all, match: {}, pool: web }]
`
  const proxy = await startProxy(config([a, b], 2000), { configPath: file })
  t.teardown(() => proxy.close())
  t.equal((await post(`${proxy.adminUrl}/admin/pools/web/members/b/drain`)).status, 200)

  writeFileSync(file, config([a, b, c], 3000))
  const reload = await post(`${proxy.adminUrl}/admin/reload`)
  t.equal(reload.status, 200, reload.body)
  t.equal(poolMember((await fetchText(`${proxy.adminUrl}/admin/pools`)).body, 'web', 'b').drained, true, 'still drained after the reload')
  for (let i = 0; i < 30; i++) await fetchText(`${proxy.url}/y`)
  t.equal(b.hits, 0, 'and still gets nothing')
  t.ok(c.hits > 0, 'the added member serves')

  writeFileSync(file, config([a, c], 3000))
  t.equal((await post(`${proxy.adminUrl}/admin/reload`)).status, 200)
  t.equal((await post(`${proxy.adminUrl}/admin/pools/web/members/b/undrain`)).status, 404, 'b is gone from the config')
  writeFileSync(file, config([a, b, c], 3000))
  t.equal((await post(`${proxy.adminUrl}/admin/reload`)).status, 200)
  t.equal(poolMember((await fetchText(`${proxy.adminUrl}/admin/pools`)).body, 'web', 'b').drained, false, 'added back: a new member, not drained')
})

t.test('unknown pool or member: 404 with a short body; the calls need the admin token off loopback', async (t) => {
  const [a] = await upstreams(t, ['a'])
  const proxy = await startProxy(`
pools: { web: { members: [{ url: "${a.url}" }] } }
routes: [{ name: all, match: {}, pool: web }]
`)
  t.teardown(() => proxy.close())
  const noPool = await post(`${proxy.adminUrl}/admin/pools/nope/members/x/drain`)
  t.equal(noPool.status, 404)
  t.equal(noPool.body, '404 Not Found: no pool "nope" (pools: web)\n')
  const noMember = await post(`${proxy.adminUrl}/admin/pools/web/members/x/undrain`)
  t.equal(noMember.status, 404)
  const hostPort = new URL(a.url).host
  t.equal(noMember.body, `404 Not Found: no member "x" in pool "web" (members: ${hostPort})\n`)
  // A member without a name is named by its host:port.
  const byHost = await post(`${proxy.adminUrl}/admin/pools/web/members/${hostPort}/drain`)
  t.equal(byHost.status, 200, byHost.body)
  // A JSON content type with an empty body is accepted (no body is read).
  const withType = await fetchText(`${proxy.adminUrl}/admin/pools/web/members/${hostPort}/undrain`, { method: 'POST', headers: { 'content-type': 'application/json' } })
  t.equal(withType.status, 200, withType.body)
})

t.test('drain is a mutating call: 401 without the token when one is set', async (t) => {
  const [a] = await upstreams(t, ['a'])
  const proxy = await startProxy(`
admin: { token: s3cret }
pools: { web: { members: [{ name: a, url: "${a.url}" }] } }
routes: [{ name: all, match: {}, pool: web }]
`)
  t.teardown(() => proxy.close())
  t.equal((await post(`${proxy.adminUrl}/admin/pools/web/members/a/drain`)).status, 401)
  t.equal((await post(`${proxy.adminUrl}/admin/pools/web/members/a/drain`, { authorization: 'Bearer s3cret' })).status, 200)
  t.equal((await fetchText(`${proxy.adminUrl}/admin/status`)).status, 200, 'reading the status needs no token')
})
