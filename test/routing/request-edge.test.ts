/** The request edge is pure: plain values in, a routed request or a named error out. */
import t from 'tap'
import { parseConfig } from '../../src/config/load.js'
import { routeRequest, type EdgeInput } from '../../src/routing/request-edge.js'
import { buildRuntime } from '../../src/routing/runtime.js'
import { UpstreamDispatcher } from '../../src/upstreams/dispatcher.js'

const dispatcher = new UpstreamDispatcher()
t.teardown(() => dispatcher.close())
const rt = buildRuntime(parseConfig(`
trusted_proxies: [10.0.0.0/8]
pools:
  a: { members: [{ url: "http://127.0.0.1:1" }] }
  b: { members: [{ url: "http://127.0.0.1:2" }] }
routes:
  - { name: small, match: { host: small.test }, pool: a, max_body_bytes: 10 }
  - name: ab
    match: { host: ab.test }
    split: { name: t, variants: [{ name: one, pool: a, weight: 1 }, { name: two, pool: b, weight: 1 }] }
  - { name: api, match: { host: api.test, path_prefix: /v1 }, pool: b }
`, 'edge.yaml', {}), dispatcher)

function input(over: Partial<EdgeInput> & { host?: string } = {}): EdgeInput {
  const host = over.host ?? 'api.test'
  const headers = over.headers ?? { host }
  return {
    method: 'GET', url: '/v1/x', headers, rawHeaders: Object.entries(headers).flatMap(([k, v]) => [k, String(v)]),
    versionMajor: 1, versionMinor: 1, peer: '::ffff:192.0.2.7', id: 'id-1', start: 0, ...over, scheme: over.scheme ?? 'http'
  }
}

function errorOf(over: Partial<EdgeInput> & { host?: string }): string | undefined {
  const r = routeRequest(input(over), rt)
  return r.ok ? undefined : r.error.name
}

t.test('routes a request: normalised authority, path and query; IPv4-mapped peer unwrapped', async (t) => {
  const r = routeRequest(input({ url: '/v1//a/./b?q=1', headers: { host: 'API.test:80' } }), rt)
  t.ok(r.ok)
  if (!r.ok) return
  t.equal(r.routed.route.name, 'api')
  t.equal(r.routed.pool.name, 'b')
  t.equal(r.routed.path, '/v1/a/b')
  t.equal(r.routed.query, '?q=1')
  t.equal(r.routed.host, 'api.test')
  t.equal(r.routed.clientIp, '192.0.2.7')
  t.equal(r.routed.trustedPeer, false)
  t.equal(r.routed.bodyLength, 0)
})

t.test('named errors, each from the one table', async (t) => {
  t.equal(errorOf({ method: 'TRACE' }), 'method_not_allowed')
  t.equal(errorOf({ method: 'CONNECT' }), 'method_not_allowed')
  t.equal(errorOf({ versionMajor: 2, versionMinor: 0 }), 'bad_version', 'HTTP/1 syntax claiming 2.0')
  t.equal(errorOf({ versionMajor: 2, versionMinor: 0, http2: true }), undefined, 'real HTTP/2')
  t.equal(errorOf({ versionMajor: 2, versionMinor: 0, http2: true, headers: { ':authority': 'api.test', host: 'other.test' } }), 'bad_host', ':authority and Host differ')
  t.equal(errorOf({ versionMinor: 0, headers: { host: 'api.test', 'transfer-encoding': 'chunked' } }), 'bad_framing')
  t.equal(errorOf({ rawHeaders: new Array(402).fill('x') }), 'too_many_fields')
  t.equal(errorOf({ url: 'http://user@api.test/v1/x' }), 'bad_path', 'userinfo in an absolute-form target')
  t.equal(errorOf({ url: 'ftp://api.test/v1/x' }), 'bad_path')
  t.equal(errorOf({ rawHeaders: ['Host', 'api.test', 'Host', 'api.test'] }), 'bad_host', 'a repeated Host')
  t.equal(errorOf({ headers: { host: 'a b' } }), 'bad_host')
  t.equal(errorOf({ url: '/v1/../../etc' }), 'bad_path')
  t.equal(errorOf({ host: 'nowhere.test' }), 'no_route')
  t.equal(errorOf({ url: '/v2/x' }), 'no_route', 'path prefixes match whole segments')
  const big = routeRequest(input({ host: 'small.test', headers: { host: 'small.test', 'content-length': '11' }, method: 'POST' }), rt)
  t.match(big, { ok: false, error: { name: 'body_too_large', status: 413, close: true }, route: { name: 'small' } })
})

t.test('absolute-form: the target\'s authority replaces Host', async (t) => {
  const r = routeRequest(input({ url: 'http://api.test:8080/v1/y', headers: { host: 'small.test' } }), rt)
  t.ok(r.ok)
  if (r.ok) {
    t.equal(r.routed.route.name, 'api')
    t.equal(r.routed.authority, 'api.test:8080')
  }
})

t.test('client address: right-most untrusted X-Forwarded-For hop behind a trusted proxy', async (t) => {
  const r = routeRequest(input({ peer: '10.1.2.3', headers: { host: 'api.test', 'x-forwarded-for': '198.51.100.1, 203.0.113.9, 10.9.9.9' } }), rt)
  t.ok(r.ok)
  if (r.ok) {
    t.equal(r.routed.clientIp, '203.0.113.9')
    t.equal(r.routed.trustedPeer, true)
  }
  const spoof = routeRequest(input({ peer: '192.0.2.1', headers: { host: 'api.test', 'x-forwarded-for': '1.2.3.4' } }), rt)
  t.ok(spoof.ok && spoof.routed.clientIp === '192.0.2.1', 'an untrusted peer cannot claim another address')
})

t.test('splits: the override header picks the variant and its pool; a draw sets the cookie', async (t) => {
  const r = routeRequest(input({ host: 'ab.test', url: '/', headers: { host: 'ab.test', 'x-switchyard-variant': 'two' } }), rt)
  t.ok(r.ok)
  if (r.ok) t.match(r.routed, { pool: { name: 'b' }, split: { name: 't', variant: 'two', source: 'override', setCookie: undefined } })
  const d = routeRequest(input({ host: 'ab.test', url: '/', headers: { host: 'ab.test' } }), rt)
  t.ok(d.ok && d.routed.split?.source === 'new' && /^sy_split_t=[A-Za-z0-9_-]{16}\.(one|two);/.test(d.routed.split.setCookie ?? ''))
})
