import t from 'tap'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy } from '../fixtures/proxy.js'

t.test('split through the proxy: cookie pins a client, header pins a user, override for QA', async (t) => {
  const a = await startUpstream('a')
  const b = await startUpstream('b')
  const proxy = await startProxy(`
pools:
  pa: { members: [{ url: "${a.url}" }] }
  pb: { members: [{ url: "${b.url}" }] }
routes:
  - name: by-cookie
    match: { path_prefix: /c }
    split: { name: hero, variants: [{ name: old, pool: pa, weight: 50 }, { name: new, pool: pb, weight: 50 }] }
  - name: by-user
    match: { path_prefix: /u }
    split: { name: checkout, sticky: { header: X-User-Id }, variants: [{ name: one, pool: pa, weight: 1 }, { name: two, pool: pb, weight: 1 }] }
`)
  t.teardown(async () => { await proxy.close(); await a.close(); await b.close() })

  const shares: Record<string, number> = { old: 0, new: 0 }
  for (let client = 0; client < 400; client++) {
    const first = await fetchText(`${proxy.url}/c`)
    const variant = first.headers['x-switchyard-variant'] as string
    const cookie = (first.headers['set-cookie'] as string).split(';')[0]
    t.match(cookie, /^sy_split_hero=[A-Za-z0-9_-]{16}\.(old|new)$/, 'the cookie pins a client id (and names its variant)')
    shares[variant]++
    for (let visit = 0; visit < 2; visit++) {
      const again = await fetchText(`${proxy.url}/c`, { headers: { cookie: `other=1; ${cookie}` } })
      if (again.headers['x-switchyard-variant'] !== variant) t.fail('client changed variant')
      if (again.headers['set-cookie'] !== undefined) t.fail('no new cookie for a pinned client')
      if (JSON.parse(again.body).name !== (variant === 'old' ? 'a' : 'b')) t.fail('variant and pool disagree')
    }
  }
  t.ok(shares.old > 140 && shares.new > 140, `both variants drawn: ${JSON.stringify(shares)}`)

  const users = new Map<string, string>()
  for (let u = 0; u < 100; u++) {
    const r = await fetchText(`${proxy.url}/u`, { headers: { 'x-user-id': `user-${u}` } })
    users.set(`user-${u}`, r.headers['x-switchyard-variant'] as string)
    t.equal(r.headers['set-cookie'], undefined, 'header stickiness needs no cookie')
  }
  for (const [u, v] of users) {
    const r = await fetchText(`${proxy.url}/u`, { headers: { 'x-user-id': u } })
    if (r.headers['x-switchyard-variant'] !== v) t.fail(`${u} changed variant`)
  }
  const forced = await fetchText(`${proxy.url}/u`, { headers: { 'x-user-id': 'user-1', 'x-switchyard-variant': users.get('user-1') === 'one' ? 'two' : 'one' } })
  t.not(forced.headers['x-switchyard-variant'], users.get('user-1'), 'the override header wins')
  t.equal(JSON.parse(forced.body).headers['x-switchyard-variant'], forced.headers['x-switchyard-variant'], 'the upstream is told the variant')

  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  t.match(metrics, /switchyard_split_assignments_total\{split="hero",variant="old",source="new"\} \d+/)
  t.match(metrics, /switchyard_split_assignments_total\{split="hero",variant="new",source="cookie"\} \d+/)
  t.match(metrics, /switchyard_split_assignments_total\{split="checkout",variant="(one|two)",source="override"\} 1/)
})

t.test('metrics after traffic, admin endpoints', async (t) => {
  const a = await startUpstream('a')
  const proxy = await startProxy(`
pools: { web: { members: [{ url: "${a.url}", name: alpha }] } }
routes: [{ name: site, match: {}, pool: web }]
`)
  t.teardown(async () => { await proxy.close(); await a.close() })
  for (let i = 0; i < 5; i++) await fetchText(`${proxy.url}/p/${i}`)
  await fetchText(`${proxy.url}/x`, { method: 'POST', body: 'hi' })
  await fetchText(`${proxy.url}/x`, { method: 'PROPFIND' })

  const m = await fetchText(`${proxy.adminUrl}/metrics`)
  t.match(m.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const body = m.body
  t.match(body, /switchyard_requests_total\{route="site",pool="web",method="GET",code="200"\} 5/)
  t.match(body, /switchyard_requests_total\{route="site",pool="web",method="POST",code="200"\} 1/)
  t.match(body, /switchyard_requests_total\{route="site",pool="web",method="other",code="200"\} 1/, 'unknown methods share one label value')
  t.match(body, /switchyard_request_duration_seconds_count\{route="site",pool="web"\} 7/)
  t.match(body, /switchyard_upstream_request_duration_seconds_count\{pool="web",member="alpha"\} 7/)
  t.match(body, /switchyard_requests_in_flight\{route="site"\} 0/)
  t.match(body, /switchyard_upstream_in_flight\{pool="web",member="alpha"\} 0/)
  t.match(body, /process_cpu_seconds_total/)
  t.match(body, /nodejs_eventloop_lag_seconds/)
  t.notMatch(body, /\/p\/\d/, 'no raw paths in labels')

  const pools = JSON.parse((await fetchText(`${proxy.adminUrl}/admin/pools`)).body)
  t.match(pools.pools.web.members[0], { name: 'alpha', url: a.url, weight: 1, available: true, healthy: true, in_flight: 0, requests: 7, failures: 0, ejections: 0 })
  t.equal((await fetchText(`${proxy.adminUrl}/healthz`)).status, 200)
  t.equal((await fetchText(`${proxy.adminUrl}/readyz`)).status, 200)
  proxy.app.setReady(false)
  t.equal((await fetchText(`${proxy.adminUrl}/readyz`)).status, 503)
})
