/**
 * Route access rules through a real proxy: CIDRs after trusted_proxies and X-Forwarded-For,
 * methods, path prefixes and patterns, required headers, `allow` short-circuits, Basic auth with
 * scrypt hashes (401 without or with bad credentials, 403 for a user a later rule refuses), the
 * global rules before the route's, and the denial metric. Every refusal is proved by the
 * upstream's hit counter too: a refused request never reaches it.
 */
import t from 'tap'
import { fetchText, startProxy } from '../fixtures/proxy.js'
import { startUpstream } from '../fixtures/upstream.js'
import { hashPassword } from '../../src/security/password-hash.js'
import { metricValue } from '../integration/websocket-fixtures.js'

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

t.test('access rules', async (t) => {
  const up = await startUpstream('web')
  t.teardown(() => up.close())
  // A small N keeps the test quick; the format and the check are the production ones.
  const alice = await hashPassword('wonderland', { N: 1024 })
  const bob = await hashPassword('builder', { N: 1024 })
  const proxy = await startProxy(`
listen: { host: 127.0.0.1, port: 0 }
trusted_proxies: [127.0.0.1/32]
access:
  - name: blocklist
    when: { cidrs: [192.0.2.66/32] }
    action: deny
pools:
  web: { members: [{ url: ${up.url} }] }
routes:
  - name: office
    match: { path_prefix: /office }
    pool: web
    access:
      - name: office-only
        unless: { cidrs: [203.0.113.0/24, "2001:db8::/32"] }
        action: deny
  - name: readonly
    match: { path_prefix: /ro }
    pool: web
    access:
      - name: no-writes
        when: { methods: [POST, PUT, PATCH, DELETE] }
        action: deny
  - name: files
    match: { path_prefix: /files }
    pool: web
    access:
      - name: private
        when: { paths: [/files/private/, "~\\\\.(bak|old)$"] }
        action: deny
  - name: internal
    match: { path_prefix: /internal }
    pool: web
    access:
      - name: need-internal
        unless: { headers: { x-internal: { equals: "yes" } } }
        action: deny
      - name: versioned
        unless: { headers: { x-api-version: { matches: "^v[0-9]+$" } } }
        action: deny
      - name: no-debug
        when: { headers: { x-debug: { present: true } } }
        action: deny
  - name: staff
    match: { path_prefix: /staff }
    pool: web
    access:
      - name: lan
        when: { cidrs: [10.0.0.0/8] }
        action: allow
      - name: login
        basic: { realm: staff area, users: { alice: "${alice}", bob: "${bob}" } }
      - name: alice-deletes
        when: { methods: [DELETE] }
        unless: { users: [alice] }
        action: deny
  - name: open
    match: { path_prefix: / }
    pool: web
`)
  t.teardown(() => proxy.close())
  const reg = proxy.app.registry
  const denied = (route: string, rule: string, reason: string): Promise<number> => metricValue(reg, 'switchyard_access_denials_total', { route, rule, reason })

  /** Status of a request, and whether it reached the upstream. */
  const probe = async (path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; reached: boolean; body: string; headers: Record<string, string | string[] | undefined> }> => {
    const before = up.hits
    const res = await fetchText(`${proxy.url}${path}`, opts)
    return { status: res.status, reached: up.hits > before, body: res.body, headers: res.headers }
  }

  t.test('CIDRs are checked on the client address after trusted_proxies', async (t) => {
    t.match(await probe('/office/a', { headers: { 'x-forwarded-for': '203.0.113.7' } }), { status: 200, reached: true })
    t.match(await probe('/office/a', { headers: { 'x-forwarded-for': '2001:db8::1' } }), { status: 200, reached: true })
    const out = await probe('/office/a', { headers: { 'x-forwarded-for': '198.51.100.1' } })
    t.match(out, { status: 403, reached: false })
    t.equal(out.body, '403 Forbidden: denied by access rule office-only\n', 'a one-line body naming the rule')
    // The peer (127.0.0.1, trusted) is not in the range: without X-Forwarded-For it is the client.
    t.match(await probe('/office/a'), { status: 403, reached: false })
    // A spoofed left-most hop does not help: the right-most untrusted hop is the client.
    t.match(await probe('/office/a', { headers: { 'x-forwarded-for': '203.0.113.7, 198.51.100.1' } }), { status: 403, reached: false })
    t.equal(await denied('office', 'office-only', 'deny'), 3)
  })

  t.test('the global rules run first, on every route', async (t) => {
    t.match(await probe('/open', { headers: { 'x-forwarded-for': '192.0.2.66' } }), { status: 403, reached: false })
    t.match(await probe('/office/a', { headers: { 'x-forwarded-for': '192.0.2.66' } }), { status: 403, reached: false })
    t.equal(await denied('open', 'blocklist', 'deny'), 1)
    t.equal(await denied('office', 'blocklist', 'deny'), 1)
    t.match(await probe('/open', { headers: { 'x-forwarded-for': '192.0.2.67' } }), { status: 200, reached: true })
  })

  t.test('methods', async (t) => {
    t.match(await probe('/ro/x'), { status: 200, reached: true })
    t.match(await probe('/ro/x', { method: 'HEAD' }), { status: 200, reached: true })
    t.match(await probe('/ro/x', { method: 'POST', body: 'x' }), { status: 403, reached: false })
    t.match(await probe('/ro/x', { method: 'DELETE' }), { status: 403, reached: false })
    t.equal(await denied('readonly', 'no-writes', 'deny'), 2)
  })

  t.test('path prefixes and patterns, on the normalised path', async (t) => {
    t.match(await probe('/files/report.txt'), { status: 200, reached: true })
    t.match(await probe('/files/private/report.txt'), { status: 403, reached: false })
    // Dot segments and percent-encoding are normalised before the rules see the path.
    t.match(await probe('/files/public/../private/report.txt'), { status: 403, reached: false })
    t.match(await probe('/files/%70rivate/report.txt'), { status: 403, reached: false })
    t.match(await probe('/files/db.bak'), { status: 403, reached: false })
    t.match(await probe('/files/db.bak?x=1'), { status: 403, reached: false })
    t.match(await probe('/files/db.bakery'), { status: 200, reached: true })
  })

  t.test('required headers: equals, matches, present', async (t) => {
    const good = { 'x-internal': 'yes', 'x-api-version': 'v2' }
    t.match(await probe('/internal/a', { headers: good }), { status: 200, reached: true })
    t.match(await probe('/internal/a', { headers: { 'x-api-version': 'v2' } }), { status: 403, reached: false })
    t.match(await probe('/internal/a', { headers: { ...good, 'x-internal': 'YES' } }), { status: 403, reached: false })
    t.match(await probe('/internal/a', { headers: { ...good, 'x-api-version': 'v2beta' } }), { status: 403, reached: false })
    t.match(await probe('/internal/a', { headers: { ...good, 'x-debug': '1' } }), { status: 403, reached: false })
    t.equal(await denied('internal', 'need-internal', 'deny'), 2, 'missing, and a value that differs in case')
    t.equal(await denied('internal', 'versioned', 'deny'), 1)
    t.equal(await denied('internal', 'no-debug', 'deny'), 1)
  })

  t.test('Basic auth: 401 without or with bad credentials, 403 for a user a later rule refuses', async (t) => {
    const none = await probe('/staff/a')
    t.match(none, { status: 401, reached: false })
    t.equal(none.headers['www-authenticate'], 'Basic realm="staff area", charset="UTF-8"')
    t.equal(none.body, '401 Unauthorized: access rule login requires credentials\n')
    const wrong = await probe('/staff/a', { headers: { authorization: basic('alice', 'looking-glass') } })
    t.match(wrong, { status: 401, reached: false })
    t.ok(wrong.headers['www-authenticate'])
    t.match(await probe('/staff/a', { headers: { authorization: basic('mallory', 'wonderland') } }), { status: 401, reached: false })
    t.match(await probe('/staff/a', { headers: { authorization: 'Basic !!!' } }), { status: 401, reached: false })
    t.equal(await denied('staff', 'login', 'missing_credentials'), 2)
    t.equal(await denied('staff', 'login', 'bad_credentials'), 2)

    const ok = await probe('/staff/a', { headers: { authorization: basic('alice', 'wonderland') } })
    t.match(ok, { status: 200, reached: true })
    // The second time comes from the verified-credentials cache: same answer.
    t.match(await probe('/staff/a', { headers: { authorization: basic('alice', 'wonderland') } }), { status: 200, reached: true })
    t.match(await probe('/staff/a', { method: 'DELETE', headers: { authorization: basic('alice', 'wonderland') } }), { status: 200, reached: true })
    t.match(await probe('/staff/a', { headers: { authorization: basic('bob', 'builder') } }), { status: 200, reached: true })
    t.match(await probe('/staff/a', { method: 'DELETE', headers: { authorization: basic('bob', 'builder') } }), { status: 403, reached: false })
    t.equal(await denied('staff', 'alice-deletes', 'deny'), 1)
  })

  t.test('allow admits at once: later rules do not run', async (t) => {
    t.match(await probe('/staff/a', { headers: { 'x-forwarded-for': '10.1.2.3' } }), { status: 200, reached: true })
  })

  t.test('global rules give every route a firewall', async (t) => {
    t.not(proxy.app.runtime().routes.find((r) => r.name === 'open')?.firewall, undefined)
  })
})

t.test('routes without any rule get no firewall at all (zero cost)', async (t) => {
  const up = await startUpstream('web')
  t.teardown(() => up.close())
  const proxy = await startProxy(`
listen: { host: 127.0.0.1, port: 0 }
pools:
  web: { members: [{ url: ${up.url} }] }
routes:
  - name: guarded
    match: { path_prefix: /guarded }
    pool: web
    access: [{ action: deny }]
  - name: plain
    match: { path_prefix: / }
    pool: web
`)
  t.teardown(() => proxy.close())
  const routes = proxy.app.runtime().routes
  t.equal(routes.find((r) => r.name === 'plain')?.firewall, undefined)
  t.not(routes.find((r) => r.name === 'guarded')?.firewall, undefined)
  t.equal((await fetchText(`${proxy.url}/guarded`)).status, 403)
  t.equal(await metricValue(proxy.app.registry, 'switchyard_access_denials_total', { route: 'guarded', rule: 'guarded.access[0]', reason: 'deny' }), 1, 'a rule without a name is named by its place')
  t.equal((await fetchText(`${proxy.url}/x`)).status, 200)
})
