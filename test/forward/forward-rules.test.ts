/**
 * The forward proxy's rules, each proved on real sockets: who may use it (client CIDRs, Basic
 * users with scrypt hashes, per-user rules), where to (hosts, *.domains, CIDRs, ports, deny
 * first), content filters (block list files re-read on reload, path patterns, content types),
 * header hygiene and anonymous mode, and the shared cache. What reaches the origin is read at
 * the origin.
 */
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { LookupAddress } from 'node:dns'
import { fetchText, type TestProxy } from '../fixtures/proxy.js'
import { startUpstream, type Upstream } from '../fixtures/upstream.js'
import { hashPassword } from '../../src/security/password-hash.js'
import type { Resolver } from '../../src/forward/safe-lookup.js'
import { basic, sample, viaProxy, startForwardProxy } from './forward-setup.js'

type Tap = Parameters<Parameters<typeof t.test>[0]>[0]
const dir = mkdtempSync(join(tmpdir(), 'sy-forward-'))

/** Every name resolves to 127.0.0.1 (no DNS in tests); counts the lookups. */
function loopbackResolver(calls: string[]): Resolver {
  return ((host: string, opts: { all?: boolean }, cb: (err: Error | null, a: string | LookupAddress[], f?: number) => void) => {
    calls.push(host)
    if (opts.all === true) cb(null, [{ address: '127.0.0.1', family: 4 }])
    else cb(null, '127.0.0.1', 4)
  }) as unknown as Resolver
}

function forwardProxy(t: Tap, forward: string, opts: { configPath?: string; resolver?: Resolver; extra?: string } = {}): Promise<TestProxy & { forwardUrl: string }> {
  return startForwardProxy(t, forward, { ...opts, resolver: opts.resolver ?? loopbackResolver([]) })
}

async function upstream(t: Tap, handler?: Parameters<typeof startUpstream>[1]): Promise<Upstream> {
  const u = await startUpstream('origin', handler)
  t.teardown(() => u.close())
  return u
}

t.test('client CIDRs: an admitted address is served, any other gets 403 naming forward.clients', async (t) => {
  const up = await upstream(t)
  const open = await forwardProxy(t, `  clients: [127.0.0.0/8]\n  allow: [{ cidr: 127.0.0.1/32 }]`)
  const ok = await viaProxy(open.forwardUrl, `${up.url}/a`)
  t.equal(ok.status, 200)
  t.equal(JSON.parse(ok.body).url, '/a', 'the origin got the path in origin-form')
  const closed = await forwardProxy(t, `  clients: [10.0.0.0/8]\n  allow: [{ cidr: 127.0.0.1/32 }]`)
  const no = await viaProxy(closed.forwardUrl, `${up.url}/b`)
  t.equal(no.status, 403)
  t.equal(no.body, '403 Forbidden: denied by forward.clients (client 127.0.0.1 is not admitted)\n')
  t.equal(up.hits, 1, 'the refused request never reached the origin')
  const nothing = await forwardProxy(t, `  allow: [{ cidr: 127.0.0.1/32 }]`)
  t.equal((await viaProxy(nothing.forwardUrl, `${up.url}/c`)).status, 403, 'deny by default: no clients, no users')
  const origin = await viaProxy(open.forwardUrl, '/relative')
  t.equal(origin.status, 400, 'an origin-form request is not a forward request')
  t.match(origin.body, /absolute-form/)
})

t.test('Basic users: 407 without or with wrong credentials, the scrypt hash admits, per-user rules', async (t) => {
  const up = await upstream(t)
  const other = await upstream(t)
  const [alice, bob] = await Promise.all([hashPassword('wonderland', { N: 1024, r: 8, p: 1 }), hashPassword('builder', { N: 1024, r: 8, p: 1 })])
  const proxy = await forwardProxy(t, `
  users:
    - { name: alice, password_hash: "${alice}" }
    - { name: bob, password_hash: "${bob}", allow: [{ cidr: 127.0.0.1/32, ports: [${other.port}] }] }
  allow: [{ cidr: 127.0.0.1/32 }]`)
  const none = await viaProxy(proxy.forwardUrl, `${up.url}/`)
  t.equal(none.status, 407)
  t.equal(none.headers['proxy-authenticate'], 'Basic realm="switchyard"')
  t.equal(none.body, '407 Proxy Authentication Required: denied by forward.users (proxy authentication required)\n')
  const wrong = await viaProxy(proxy.forwardUrl, `${up.url}/`, { headers: { 'proxy-authorization': basic('alice', 'nope') } })
  t.equal(wrong.status, 407, 'a wrong password asks again')
  t.match(wrong.body, /invalid credentials/)
  t.equal((await viaProxy(proxy.forwardUrl, `${up.url}/`, { headers: { 'proxy-authorization': basic('mallory', 'wonderland') } })).status, 407, 'an unknown user')
  t.equal(up.hits, 0)
  for (let i = 0; i < 2; i++) {
    const ok = await viaProxy(proxy.forwardUrl, `${up.url}/alice`, { headers: { 'proxy-authorization': basic('alice', 'wonderland'), 'proxy-connection': 'keep-alive' } })
    t.equal(ok.status, 200, `alice #${i + 1} (the second from the verified-credentials cache)`)
  }
  const seen = up.received[0].headers
  t.equal(seen['proxy-authorization'], undefined, 'Proxy-Authorization never reaches the origin')
  t.equal(seen['proxy-connection'], undefined, 'Proxy-Connection never reaches the origin')
  const bobUp = await viaProxy(proxy.forwardUrl, `${up.url}/bob`, { headers: { 'proxy-authorization': basic('bob', 'builder') } })
  t.equal(bobUp.status, 403, "bob's own allow list replaces forward.allow")
  t.equal(bobUp.body, `403 Forbidden: denied by forward.users[bob].allow (no rule allows 127.0.0.1:${up.port})\n`)
  t.equal((await viaProxy(proxy.forwardUrl, `${other.url}/bob`, { headers: { 'proxy-authorization': basic('bob', 'builder') } })).status, 200, 'bob reaches what his rules allow')
  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  t.equal(sample(metrics, 'switchyard_forward_denials_total', 'rule="forward.users"'), 3)
  t.equal(sample(metrics, 'switchyard_forward_denials_total', 'rule="forward.users[bob].allow"'), 1)
  t.equal(sample(metrics, 'switchyard_forward_requests_total', 'method="GET",code="407"'), 3)
})

t.test('destinations: exact hosts, *.domains, CIDRs with ports, deny before allow; names refused before any lookup', async (t) => {
  const up = await upstream(t)
  const calls: string[] = []
  const p = up.port
  const proxy = await forwardProxy(t, `
  clients: [127.0.0.1]
  allow:
    - { host: api.example.test }
    - { host: "*.good.test" }
    - { cidr: 127.0.0.1/32, ports: [${p}] }
  deny:
    - { host: bad.good.test }
    - { host: "*", ports: [25] }`, { resolver: loopbackResolver(calls) })
  const cases: [string, number, string?][] = [
    [`http://api.example.test:${p}/`, 200],
    [`http://x.good.test:${p}/`, 200],
    [`http://good.test:${p}/`, 200],
    [`http://127.0.0.1:${p}/`, 200],
    [`http://bad.good.test:${p}/`, 403, `denied by forward.deny[0] (host bad.good.test)`],
    [`http://x.good.test:25/`, 403, 'denied by forward.deny[1] (host *, ports 25)'],
    [`http://api2.example.test:${p}/`, 403, `denied by forward.allow (no rule allows api2.example.test:${p})`],
    [`http://127.0.0.1:${p + 1}/`, 403, `denied by forward.allow (no rule allows 127.0.0.1:${p + 1})`]
  ]
  for (const [target, status, why] of cases) {
    const r = await viaProxy(proxy.forwardUrl, target)
    t.equal(r.status, status, target)
    if (why !== undefined) t.equal(r.body, `403 Forbidden: ${why}\n`, target)
  }
  t.equal(up.hits, 4, 'only the allowed requests reached the origin')
  t.notOk(calls.includes('bad.good.test') || calls.includes('api2.example.test'), `refused names were never looked up (${calls.join(', ')})`)
  t.same(up.received.map((r) => r.headers.host), [`api.example.test:${p}`, `x.good.test:${p}`, `good.test:${p}`, `127.0.0.1:${p}`], 'Host is the target authority')
})

t.test('block list files (re-read on reload), path patterns and content types answer 403 naming the rule', async (t) => {
  const up = await upstream(t, (req, res) => {
    const video = req.url?.startsWith('/video') === true
    res.writeHead(200, { 'content-type': video ? 'video/mp4' : 'text/plain; charset=utf-8' })
    res.end(video ? 'MOVIE' : 'text')
  })
  const list = join(dir, 'blocked.txt')
  writeFileSync(list, '# ads\nads.test\n\n')
  const configPath = join(dir, 'filters.yaml')
  const proxy = await forwardProxy(t, `
  clients: [127.0.0.1]
  allow: [{ host: "*" }, { cidr: 127.0.0.1/32 }]
  filters:
    blocklists: [blocked.txt]
    paths: ['^/private/', '\\.exe$']
    content_types: [video/*]`, { configPath })
  const p = up.port
  const ad = await viaProxy(proxy.forwardUrl, `http://cdn.ads.test:${p}/x`)
  t.equal(ad.body, '403 Forbidden: denied by forward.filters.blocklists[0] (domain ads.test is blocked)\n', 'a listed domain blocks its subdomains')
  t.equal((await viaProxy(proxy.forwardUrl, `http://tracker.test:${p}/x`)).status, 200, 'not listed yet')
  writeFileSync(list, 'ads.test\ntracker.test # added\n')
  t.match(await proxy.app.reload(), { ok: true })
  t.equal((await viaProxy(proxy.forwardUrl, `http://tracker.test:${p}/x`)).body, '403 Forbidden: denied by forward.filters.blocklists[0] (domain tracker.test is blocked)\n', 'the reload re-read the file')
  t.equal((await viaProxy(proxy.forwardUrl, `http://site.test:${p}/private/a`)).body, '403 Forbidden: denied by forward.filters.paths[0] (path matches ^\\/private\\/)\n')
  t.equal((await viaProxy(proxy.forwardUrl, `http://site.test:${p}/setup.exe`)).status, 403)
  const hitsBefore = up.hits
  const video = await viaProxy(proxy.forwardUrl, `http://site.test:${p}/video/1`)
  t.equal(video.status, 403)
  t.equal(video.body, '403 Forbidden: denied by forward.filters.content_types[0] (content type video/mp4 is blocked)\n', 'the body is never relayed')
  t.equal(up.hits, hitsBefore + 1, 'the content type is known only from the answer')
  t.equal((await viaProxy(proxy.forwardUrl, `http://site.test:${p}/text`)).body, 'text')
  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  t.equal(sample(metrics, 'switchyard_forward_denials_total', 'rule="forward.filters.content_types[0]"'), 1)
  t.equal(sample(metrics, 'switchyard_forward_denials_total', 'rule="forward.filters.blocklists[0]"'), 2)
})

t.test('headers: Via and X-Forwarded-For by default; anonymous mode sends neither, nor the listed fields', async (t) => {
  const up = await upstream(t)
  const headers = { 'proxy-connection': 'keep-alive', from: 'me@example.com', referer: 'http://secret.test/', 'user-agent': 'curl/8', cookie: 'a=1', forwarded: 'for=10.1.1.1', 'x-forwarded-for': '10.1.1.1' }
  const plain = await forwardProxy(t, `  clients: [127.0.0.1]\n  allow: [{ cidr: 127.0.0.1/32 }]`)
  t.equal((await viaProxy(plain.forwardUrl, `${up.url}/`, { headers })).status, 200)
  const a = up.received[0].headers
  t.equal(a.via, '1.1 switchyard')
  t.equal(a['x-forwarded-for'], '127.0.0.1', "the client's own X-Forwarded-For is not trusted")
  t.equal(a.forwarded, undefined)
  t.equal(a['proxy-connection'], undefined)
  t.equal(a['x-forwarded-host'], undefined, 'no reverse proxy conventions')
  t.equal(a['user-agent'], 'curl/8')
  const anon = await forwardProxy(t, `  clients: [127.0.0.1]\n  allow: [{ cidr: 127.0.0.1/32 }]\n  anonymous: true`)
  t.equal((await viaProxy(anon.forwardUrl, `${up.url}/`, { headers })).status, 200)
  const b = up.received[1].headers
  for (const h of ['via', 'x-forwarded-for', 'forwarded', 'from', 'referer', 'user-agent', 'x-request-id', 'x-real-ip', 'proxy-connection']) t.equal(b[h], undefined, `no ${h}`)
  t.equal(b.cookie, 'a=1', 'cookies pass (add Cookie to strip_headers to drop them)')
  const custom = await forwardProxy(t, `  clients: [127.0.0.1]\n  allow: [{ cidr: 127.0.0.1/32 }]\n  anonymous: true\n  strip_headers: [Cookie]`)
  await viaProxy(custom.forwardUrl, `${up.url}/`, { headers })
  const c = up.received[2].headers
  t.equal(c.cookie, undefined)
  t.equal(c['user-agent'], 'curl/8', 'the list replaces the default one')
})

t.test('plain http:// GETs share the cache: a second client gets a hit, counted once at the origin', async (t) => {
  const up = await upstream(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'public, max-age=60' })
    res.end(`page ${req.url ?? ''}`)
  })
  const proxy = await forwardProxy(t, `  clients: [127.0.0.1]\n  allow: [{ cidr: 127.0.0.1/32 }]\n  cache: { enabled: true }`)
  const first = await viaProxy(proxy.forwardUrl, `${up.url}/cached?q=1`)
  const second = await viaProxy(proxy.forwardUrl, `${up.url}/cached?q=1`)
  t.equal(first.headers['x-cache'], 'MISS')
  t.equal(second.headers['x-cache'], 'HIT')
  t.equal(second.body, 'page /cached?q=1')
  t.equal(up.hits, 1, 'one origin request for two clients')
  await viaProxy(proxy.forwardUrl, `${up.url}/cached?q=2`)
  t.equal(up.hits, 2, 'the query is part of the key')
  // Same path on another authority is another resource.
  const other = await upstream(t, (req, res) => { res.writeHead(200, { 'cache-control': 'public, max-age=60' }); res.end('other') })
  t.equal((await viaProxy(proxy.forwardUrl, `${other.url}/cached?q=1`)).body, 'other', 'the key includes the authority')
  t.equal((await viaProxy(proxy.forwardUrl, `${up.url}/cached?q=1`, { method: 'POST', body: 'x' })).status, 200)
  t.equal((await viaProxy(proxy.forwardUrl, `${up.url}/cached?q=1`)).headers['x-cache'], 'MISS', 'a POST invalidated the stored answer (RFC 9111 section 4.4)')
})
