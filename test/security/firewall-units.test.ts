/**
 * The firewall's pure parts: scrypt hashes (format, verification, malformed input), the
 * throttled error log (at most one line per interval, with the count it held back), and the
 * config checks of access rules (each problem named with its path).
 */
import t from 'tap'
import { BlockList } from 'node:net'
import { ConfigError, parseCidr, parseConfig } from '../../src/config/load.js'
import { CidrSet } from '../../src/security/cidr-set.js'
import { compileConditions } from '../../src/security/access-conditions.js'
import type { RoutedRequest } from '../../src/routing/request-edge.js'
import { hashPassword, parseHash, verifyPassword } from '../../src/security/password-hash.js'
import { Registry } from 'prom-client'
import { LimiterRegistry, ThrottledLog } from '../../src/security/rate-limit.js'
import { compileFirewalls } from '../../src/security/firewall.js'
import { createFirewallMetrics } from '../../src/security/firewall-metrics.js'
import { planReload } from '../../src/control/reload-plan.js'

t.test('scrypt password hashes', async (t) => {
  const stored = await hashPassword('correct horse', { N: 1024 })
  t.match(stored, /^scrypt\$1024\$8\$1\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/)
  t.equal(await verifyPassword('correct horse', stored), true)
  t.equal(await verifyPassword('correct horsE', stored), false)
  t.equal(await verifyPassword('', stored), false)
  // Two hashes of one password differ (random salt) and both verify.
  const again = await hashPassword('correct horse', { N: 1024 })
  t.not(again, stored)
  t.equal(await verifyPassword('correct horse', again), true)
  // Malformed: wrong scheme, N not a power of two, too much memory, short salt.
  const [, , , , salt, hash] = stored.split('$')
  for (const bad of ['bcrypt$1024$8$1$' + salt + '$' + hash, `scrypt$1000$8$1$${salt}$${hash}`, `scrypt$1048576$1024$1$${salt}$${hash}`, `scrypt$1024$8$1$AAAA$${hash}`, 'scrypt$1024$8$1']) {
    t.equal(parseHash(bad), undefined, bad)
    t.equal(await verifyPassword('correct horse', bad), false)
  }
})

t.test('the throttled log writes at most one line per interval', async (t) => {
  let now = 0
  const lines: { fields: Record<string, unknown>; msg: string }[] = []
  const log = new ThrottledLog(() => 60000, (fields, msg) => lines.push({ fields: fields as Record<string, unknown>, msg }), () => now)
  log.report({ rule: 'r' }, 'down')
  for (let i = 0; i < 5; i++) { now += 1000; log.report({ rule: 'r' }, 'down') }
  t.equal(lines.length, 1)
  t.equal(lines[0].fields.suppressed, 0)
  now = 61000
  log.report({ rule: 'r' }, 'down')
  t.equal(lines.length, 2)
  t.equal(lines[1].fields.suppressed, 5, 'the next line says how many were held back')
})

t.test('access rules are checked with the config, every problem named', async (t) => {
  const yaml = `
listen: { host: 127.0.0.1, port: 0 }
access:
  - { name: a, action: deny, rate_limit: { requests: 1 } }
  - { name: a, when: { cidrs: [10.0.0.0/33] }, action: deny }
pools:
  web: { members: [{ url: "http://127.0.0.1:9" }] }
routes:
  - name: r
    match: { path_prefix: / }
    pool: web
    access:
      - { when: { paths: ["~([a-z"] }, action: deny }
      - { when: { paths: [admin] }, action: deny }
      - { when: { headers: { x-a: { present: true, equals: "1" } } }, action: deny }
      - { jwt: { secret: "0123456789abcdef0123456789abcdef", jwks_file: k.json } }
      - { jwt: { jwks_file: k.json, algorithms: [HS256] } }
      - { basic: { users: { alice: "plain-text" } } }
      - {}
`
  let err: unknown
  try { parseConfig(yaml, 'fw.yaml', {}) } catch (e) { err = e }
  t.ok(err instanceof ConfigError)
  const text = (err as Error).message
  t.match(text, /access\[0\]: expected exactly one of action \(allow or deny\), basic, jwt or rate_limit \(found action, rate_limit\)/)
  t.match(text, /access\[1\]\.name: duplicate rule name "a" \(also access\[0\]\)/)
  t.match(text, /access\[1\]\.when\.cidrs\[0\]: expected an IP address or CIDR/)
  t.match(text, /routes\[0\]\.access\[0\]\.when\.paths\[0\]: expected a regular expression after "~"/)
  t.match(text, /routes\[0\]\.access\[1\]\.when\.paths\[0\]: expected a path prefix starting with "\/"/)
  t.match(text, /routes\[0\]\.access\[2\]\.when\.headers\.x-a: expected exactly one of present, equals or matches/)
  t.match(text, /routes\[0\]\.access\[3\]\.jwt: expected exactly one of secret \(HS256\) or jwks_file/)
  t.match(text, /routes\[0\]\.access\[4\]\.jwt\.algorithms: HS256 needs secret/)
  t.match(text, /routes\[0\]\.access\[5\]\.basic\.users\.alice: .*scrypt/)
  t.match(text, /routes\[0\]\.access\[6\]: expected exactly one of action/)
})

t.test('a JWKS file path is relative to the config file', async (t) => {
  const c = parseConfig(`
listen: { host: 127.0.0.1, port: 0 }
pools:
  web: { members: [{ url: "http://127.0.0.1:9" }] }
routes:
  - name: r
    match: { path_prefix: / }
    pool: web
    access: [{ jwt: { jwks_file: keys/jwks.json } }]
`, '/etc/switchyard/upstreams.yaml', {})
  t.equal(c.routes[0].access[0].jwt?.jwks_file, '/etc/switchyard/keys/jwks.json')
})

t.test('a reload that changes access rules is live and never shows their values', async (t) => {
  const base = (access: string, routeAccess: string): string => `
listen: { host: 127.0.0.1, port: 0 }
access: ${access}
pools:
  web: { members: [{ url: "http://127.0.0.1:9" }] }
routes:
  - { name: r, match: { path_prefix: / }, pool: web, access: ${routeAccess} }
`
  const old = parseConfig(base('[]', '[{ jwt: { secret: "old-secret-0123456789abcdef0123456789" } }]'), 'a.yaml', {})
  const next = parseConfig(base('[{ unless: { headers: { x-key: { equals: "shared-key" } } }, action: deny }]', '[{ jwt: { secret: "new-secret-0123456789abcdef0123456789" } }]'), 'a.yaml', {})
  const changes = planReload(old, next)
  t.same(changes.map((c) => [c.path, c.class]), [['access', 'live'], ['routes[r].access', 'live']])
  t.notMatch(JSON.stringify(changes), /secret-|shared-key/)
})

t.test('CidrSet agrees with node:net BlockList', async (t) => {
  const ranges = ['10.0.0.0/8', '192.168.1.0/24', '203.0.113.7', '0.0.0.0/1', '2001:db8::/32', 'fe80::/10', '::1/128', '2001:db8:1:2:3:4:5:6/127', '64:ff9b::/96']
  const set = new CidrSet()
  const list = new BlockList()
  for (const r of ranges) {
    t.equal(set.add(r), true, r)
    const p = parseCidr(r)!
    list.addSubnet(p.address, p.prefix, p.family)
  }
  t.equal(set.add('10.0.0.0/33'), false)
  t.equal(set.add('not-an-ip'), false)
  const probes = ['10.1.2.3', '11.0.0.1', '192.168.1.255', '192.168.2.1', '203.0.113.7', '203.0.113.8', '127.0.0.1', '128.0.0.1', '0.0.0.0', '255.255.255.255',
    '2001:db8::1', '2001:db9::1', 'fe80::1%eth0', 'febf:ffff::1', 'fec0::1', '::1', '::2', '2001:db8:1:2:3:4:5:7', '2001:db8:1:2:3:4:5:8', '64:ff9b::192.0.2.33', '64:ff9c::1', '1::']
  for (const ip of probes) {
    const family = ip.includes(':') ? 'ipv6' : 'ipv4'
    t.equal(set.has(ip), list.check(ip.replace(/%.*$/, ''), family), ip)
  }
  // An IPv4-mapped address is its IPv4 address (RFC 4291 section 2.5.5.2), in either spelling.
  t.equal(set.has('::ffff:10.0.0.1'), true)
  t.equal(set.has('::FFFF:a00:1'), true)
  t.equal(set.has('::ffff:200.0.0.1'), false)
  const only6 = new CidrSet()
  only6.add('::ffff:0:0/96')
  t.equal(only6.has('::ffff:200.0.0.1'), true, 'an IPv6 rule over the mapped range still applies')
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', '1:2:3', '1::2::3', 'g::1', '1.2.3.4 ']) t.equal(set.has(bad), false, JSON.stringify(bad))
})

t.test('rules that need no I/O decide synchronously; routes without rules have no firewall', async (t) => {
  const c = parseConfig(`
listen: { host: 127.0.0.1, port: 0 }
pools:
  web: { members: [{ url: "http://127.0.0.1:9" }] }
routes:
  - name: sync
    match: { path_prefix: /s }
    pool: web
    access:
      - { unless: { cidrs: [127.0.0.0/8] }, action: deny }
      - { when: { methods: [DELETE] }, action: deny }
      - { when: { paths: ["~\\\\.bak$"] }, action: deny }
  - name: limited
    match: { path_prefix: /l }
    pool: web
    access:
      - { when: { methods: [POST] }, rate_limit: { requests: 1 } }
  - name: none
    match: { path_prefix: / }
    pool: web
`, 'u.yaml', {})
  const ctx = { metrics: createFirewallMetrics(new Registry()), limiters: new LimiterRegistry(), storeErrors: new ThrottledLog(() => 1000, () => {}), redis: () => { throw new Error('no Redis here') } }
  const fws = compileFirewalls(c, ctx)
  t.equal(fws.has('none'), false)
  const req = { method: 'GET', path: '/s/x', headers: {}, clientIp: '127.0.0.1' }
  const allowed = fws.get('sync')!.check(req)
  t.notOk(allowed instanceof Promise)
  t.match(allowed, { admit: true, label: 'allow' })
  const denied = fws.get('sync')!.check({ ...req, clientIp: '10.0.0.1' })
  t.notOk(denied instanceof Promise)
  t.match(denied, { admit: false, status: 403, label: 'deny:sync.access[0]' })
  // A rate limit that does not apply (GET) costs no Promise either; one that applies does.
  t.notOk(fws.get('limited')!.check(req) instanceof Promise)
  const post = fws.get('limited')!.check({ ...req, method: 'POST' })
  t.ok(post instanceof Promise)
  t.match(await post, { admit: true })
  t.match(await fws.get('limited')!.check({ ...req, method: 'POST' }), { admit: false, status: 429, label: 'rate_limited:limited.access[0]' })
})

t.test('a methods condition naming GET covers HEAD (answered from the GET, and from its cached copy)', async (t) => {
  const get = compileConditions({ methods: ['GET'] })
  const req = (method: string): RoutedRequest => ({ method, path: '/', clientIp: '127.0.0.1', headers: {} }) as unknown as RoutedRequest
  t.equal(get(req('GET'), undefined), true)
  t.equal(get(req('HEAD'), undefined), true)
  t.equal(get(req('POST'), undefined), false)
  t.equal(compileConditions({ methods: ['POST'] })(req('HEAD'), undefined), false)
})
