/**
 * The SSRF guard: special-purpose addresses (loopback, private, link-local, cloud metadata) are
 * refused unless an allow rule names them, judged on the address a name resolves to when the
 * connection is made (a custom resolver stands in for DNS), so a name that passes the name rules
 * cannot lead to 127.0.0.1.
 */
import t from 'tap'
import type { LookupAddress } from 'node:dns'
import { fetchText, type TestProxy } from '../fixtures/proxy.js'
import { startUpstream } from '../fixtures/upstream.js'
import type { Resolver } from '../../src/forward/safe-lookup.js'
import { connectVia, sample, viaProxy, startForwardProxy } from './forward-setup.js'

type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

/** A resolver from a table; records every lookup (the guard runs at connect time, on these). */
function tableResolver(table: Record<string, string>, calls: string[]): Resolver {
  return ((host: string, opts: { all?: boolean }, cb: (err: Error | null, a: string | LookupAddress[], f?: number) => void) => {
    calls.push(host)
    const address = table[host]
    if (address === undefined) return cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' }), '', 0)
    const family = address.includes(':') ? 6 : 4
    if (opts.all === true) cb(null, [{ address, family }])
    else cb(null, address, family)
  }) as unknown as Resolver
}

function forwardProxy(t: Tap, forward: string, resolver: Resolver): Promise<TestProxy & { forwardUrl: string }> {
  return startForwardProxy(t, `  clients: [127.0.0.1]\n${forward}`, { resolver })
}

t.test('a name that resolves to loopback is refused at connect time, unless a CIDR rule names the address', async (t) => {
  const up = await startUpstream('internal')
  t.teardown(() => up.close())
  const calls: string[] = []
  const resolver = tableResolver({ 'evil.test': '127.0.0.1', 'public.test': '127.0.0.1' }, calls)
  const guarded = await forwardProxy(t, `  allow: [{ host: evil.test }, { host: "*" }]`, resolver)
  const r = await viaProxy(guarded.forwardUrl, `http://evil.test:${up.port}/admin`)
  t.equal(r.status, 403)
  t.equal(r.body, '403 Forbidden: denied by forward.ssrf (127.0.0.1 is a loopback address and no allow rule names it)\n')
  t.equal(up.hits, 0, 'nothing reached the loopback service')
  t.same(calls, ['evil.test'], 'the name passed the name rules and was resolved when connecting')
  const tunnel = await connectVia(guarded.forwardUrl, `evil.test:443`)
  t.equal(tunnel.status, 403, 'CONNECT goes through the same guard')
  t.match(tunnel.body, /denied by forward\.ssrf \(127\.0\.0\.1 is a loopback address/)
  const metrics = (await fetchText(`${guarded.adminUrl}/metrics`)).body
  t.equal(sample(metrics, 'switchyard_forward_denials_total', 'rule="forward.ssrf"'), 2)
  t.equal(sample(metrics, 'switchyard_upstream_errors_total', 'pool="~forward",member="origin",kind="refused"'), 0, 'a refusal is not an origin failure')

  const opened = await forwardProxy(t, `  allow: [{ host: evil.test }, { cidr: 127.0.0.0/8 }]`, resolver)
  const ok = await viaProxy(opened.forwardUrl, `http://evil.test:${up.port}/admin`)
  t.equal(ok.status, 200, 'an explicit CIDR rule opens the guard for that range')
  t.equal(up.hits, 1)
  t.equal(up.received[0].headers.host, `evil.test:${up.port}`)
})

t.test('address targets: metadata, private, link-local, unspecified and mapped addresses are refused without a connection', async (t) => {
  const calls: string[] = []
  const proxy = await forwardProxy(t, `  allow: [{ host: "*" }]`, tableResolver({}, calls))
  const cases: [string, string][] = [
    ['http://169.254.169.254/latest/meta-data/', '169.254.169.254 is a cloud metadata address'],
    ['http://[fd00:ec2::254]/', 'fd00:ec2::254 is a cloud metadata address'],
    ['http://10.1.2.3/', '10.1.2.3 is a private address'],
    ['http://192.168.1.1:8080/', '192.168.1.1 is a private address'],
    ['http://[fc00::1]/', 'fc00::1 is a private address'],
    ['http://169.254.1.1/', '169.254.1.1 is a link-local address'],
    ['http://[::1]/', '::1 is a loopback address'],
    ['http://0.0.0.0/', '0.0.0.0 is a unspecified address'],
    ['http://[::ffff:127.0.0.1]/', '127.0.0.1 is a loopback address']
  ]
  for (const [target, why] of cases) {
    const r = await viaProxy(proxy.forwardUrl, target)
    t.equal(r.status, 403, target)
    t.equal(r.body, `403 Forbidden: denied by forward.ssrf (${why} and no allow rule names it)\n`, target)
  }
  t.same(calls, [], 'no lookups for address targets')
})

t.test('a deny CIDR applies to the address a name resolves to', async (t) => {
  const up = await startUpstream('x')
  t.teardown(() => up.close())
  const proxy = await forwardProxy(t, `  allow: [{ host: "*.test" }, { cidr: 127.0.0.0/8 }]\n  deny: [{ cidr: 127.0.0.1/32 }]`, tableResolver({ 'app.test': '127.0.0.1' }, []))
  const r = await viaProxy(proxy.forwardUrl, `http://app.test:${up.port}/`)
  t.equal(r.status, 403)
  t.equal(r.body, '403 Forbidden: denied by forward.deny[0] (cidr 127.0.0.1/32: 127.0.0.1)\n')
  t.equal(up.hits, 0)
  const unknown = await viaProxy(proxy.forwardUrl, `http://nowhere.test:${up.port}/`)
  t.equal(unknown.status, 502, 'a name that does not resolve is a 502')
  t.match(unknown.body, /did not resolve/)
})
