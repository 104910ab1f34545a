/**
 * Host and request-target (RFC 9112 sections 3.2 and 3.3, RFC 9110 section 7.2): what the
 * proxy routes on is exactly one valid authority; anything else is refused before an upstream
 * sees a byte. Absolute-form targets are routed by their authority, and the upstream must then
 * see that authority as Host. CONNECT is never tunnelled, TRACE is refused, OPTIONS * is never
 * forwarded.
 */
import t from 'tap'
import { startUpstream, type Upstream } from '../fixtures/upstream.js'
import { countBytes, proxyFor, sendRaw, type ByteCounter, type Teardown } from '../fixtures/security.js'

async function setup(t: Teardown) {
  const a = await startUpstream('A')
  const b = await startUpstream('B')
  const bytes = { a: countBytes(a), b: countBytes(b) }
  t.teardown(async () => { await a.close(); await b.close() })
  // No route without a host: there is no default.
  const proxy = await proxyFor(t, `
pools:
  a: { members: [{ url: "${a.url}" }] }
  b: { members: [{ url: "${b.url}" }] }
routes:
  - { name: a, match: { host: a.test }, pool: a }
  - { name: b, match: { host: b.test }, pool: b }
`)
  return { a, b, bytes, proxy }
}

const total = (...c: ByteCounter[]): number => c.reduce((n, x) => n + x.bytes, 0)
const hits = (...u: Upstream[]): number => u.reduce((n, x) => n + x.hits, 0)
const req = (...lines: string[]): string => lines.join('\r\n') + '\r\n\r\n'

t.test('invalid, missing or repeated Host: 400, nothing upstream', async (t) => {
  const s = await setup(t)
  const cases: [string, string][] = [
    ['two Host fields, different', req('GET /x HTTP/1.1', 'Host: a.test', 'Host: b.test')],
    ['two Host fields, same value', req('GET /x HTTP/1.1', 'Host: a.test', 'Host: a.test')],
    ['two Host fields, different case', req('GET /x HTTP/1.1', 'Host: a.test', 'host: b.test')],
    ['empty Host', req('GET /x HTTP/1.1', 'Host: ')],
    ['Host "a b"', req('GET /x HTTP/1.1', 'Host: a b')],
    ['Host "evil.com/x"', req('GET /x HTTP/1.1', 'Host: evil.com/x')],
    ['Host "a.test/x" (a served host plus a path)', req('GET /x HTTP/1.1', 'Host: a.test/x')],
    ['Host "host:port:junk"', req('GET /x HTTP/1.1', 'Host: a.test:80:junk')],
    ['Host "[::1" (unclosed IPv6 literal)', req('GET /x HTTP/1.1', 'Host: [::1')],
    ['Host with userinfo "evil@a.test"', req('GET /x HTTP/1.1', 'Host: evil@a.test')],
    ['Host with a non-numeric port', req('GET /x HTTP/1.1', 'Host: a.test:http')],
    ['Host with a backslash', req('GET /x HTTP/1.1', 'Host: a.test\\b.test')],
    ['Host with a percent-escape', req('GET /x HTTP/1.1', 'Host: a%2etest')],
    ['Host with a comma (two values)', req('GET /x HTTP/1.1', 'Host: a.test, b.test')],
    ['missing Host on HTTP/1.1', req('GET /x HTTP/1.1', 'X-A: 1')]
  ]
  for (const [name, bytes] of cases) {
    const before = total(s.bytes.a, s.bytes.b)
    const r = await sendRaw(s.proxy.url, bytes, { responses: 1 })
    t.equal(r.status, 400, `${name}: 400`)
    t.equal(total(s.bytes.a, s.bytes.b) - before, 0, `${name}: no upstream received a byte`)
  }
  t.equal(hits(s.a, s.b), 0)
})

t.test('unknown Host without a default route: 404 (or 421), the upstreams get nothing', async (t) => {
  const s = await setup(t)
  for (const host of ['unknown.test', 'a.test.evil.test', 'test', '127.0.0.1', '[::1]']) {
    const r = await sendRaw(s.proxy.url, req('GET / HTTP/1.1', `Host: ${host}`), { responses: 1 })
    t.ok(r.status === 404 || r.status === 421, `Host ${host}: ${r.status}`)
  }
  // The served hosts, spelled in equivalent ways, are routed (controls).
  for (const [host, name] of [['a.test', 'A'], ['A.TEST', 'A'], ['a.test.', 'A'], ['b.test:8080', 'B']]) {
    const r = await sendRaw(s.proxy.url, req('GET /ok HTTP/1.1', `Host: ${host}`), { responses: 1 })
    t.equal(r.status, 200, `Host ${host}: routed`)
    t.match(r.responses[0]?.body.toString() ?? '', `"name":"${name}"`, `Host ${host}: to pool ${name}`)
  }
  t.equal(hits(s.a, s.b), 4, 'only the controls reached an upstream')
})

t.test('absolute-form targets: routed by their authority, never to hosts we do not serve', async (t) => {
  const s = await setup(t)
  const refused: [string, string][] = [
    ['a host we do not serve', req('GET http://evil.test/x HTTP/1.1', 'Host: a.test')],
    ['a host we do not serve, no Host field', req('GET http://evil.test/x HTTP/1.1')],
    ['an IP literal we do not serve', req('GET http://169.254.169.254/latest/meta-data/ HTTP/1.1', 'Host: a.test')],
    ['a scheme other than http(s)', req('GET ftp://a.test/x HTTP/1.1', 'Host: a.test')],
    ['a file: URL', req('GET file:///etc/passwd HTTP/1.1', 'Host: a.test')],
    ['an unclosed IPv6 authority', req('GET http://[::1/x HTTP/1.1', 'Host: a.test')],
    ['authority-form with GET', req('GET a.test:80 HTTP/1.1', 'Host: a.test')],
    ['asterisk-form with GET', req('GET * HTTP/1.1', 'Host: a.test')]
  ]
  for (const [name, bytes] of refused) {
    const before = total(s.bytes.a, s.bytes.b)
    const r = await sendRaw(s.proxy.url, bytes, { responses: 1 })
    t.ok([400, 404, 421].includes(r.status), `${name}: refused (${r.status})`)
    t.equal(total(s.bytes.a, s.bytes.b) - before, 0, `${name}: no upstream received a byte`)
  }

  // A host we serve: the target's authority wins over the Host field (RFC 9112 section 3.2.2).
  const r = await sendRaw(s.proxy.url, req('GET http://b.test/abs?q=1 HTTP/1.1', 'Host: a.test'), { responses: 1 })
  t.equal(r.status, 200, 'http://b.test/... with Host: a.test is served')
  t.equal(s.a.hits, 0, 'not by pool a (the Host field)')
  t.equal(s.b.hits, 1, 'by pool b (the target authority)')
  const seen = s.b.received[0]
  t.equal(seen?.url, '/abs?q=1', 'the upstream gets the origin-form path and query')
  t.equal(seen?.headers.host, 'b.test', 'and Host: b.test, the authority that was routed')
  t.equal(seen?.headers['x-forwarded-host'], 'b.test', 'X-Forwarded-Host is that authority too')

  const u = await sendRaw(s.proxy.url, req('GET http://evil@b.test/x HTTP/1.1', 'Host: b.test'), { responses: 1 })
  t.equal(u.status, 400, 'userinfo in the target is refused (RFC 9110 4.2.4)')
})

t.test('CONNECT is never tunnelled, TRACE gets 405, OPTIONS * is never forwarded', async (t) => {
  const s = await setup(t)
  const upstreamBytes = (): number => total(s.bytes.a, s.bytes.b)
  // CONNECT straight at an upstream, then bytes that would be tunnelled.
  const target = `127.0.0.1:${s.a.port}`
  const tunnel = req(`CONNECT ${target} HTTP/1.1`, `Host: ${target}`) + req('GET /tunnelled HTTP/1.1', 'Host: a.test')
  const c = await sendRaw(s.proxy.url, tunnel, { responses: 1 })
  t.equal(upstreamBytes(), 0, 'CONNECT: nothing reached an upstream, not even the bytes after it')
  t.notMatch(c.text, /^HTTP\/1\.[01] 200/, 'CONNECT: never answered 200 (no tunnel)')
  t.equal(c.status, 405, 'CONNECT: 405')
  for (const [name, bytes] of [
    ['CONNECT to a served host', req('CONNECT a.test:443 HTTP/1.1', 'Host: a.test:443')],
    ['CONNECT with a path', req('CONNECT /x HTTP/1.1', 'Host: a.test')]
  ]) {
    const r = await sendRaw(s.proxy.url, bytes, { responses: 1 })
    t.notMatch(r.text, /^HTTP\/1\.[01] 2/, `${name}: not tunnelled`)
    t.equal(upstreamBytes(), 0, `${name}: nothing upstream`)
  }

  for (const [name, bytes] of [
    ['TRACE', req('TRACE / HTTP/1.1', 'Host: a.test', 'Max-Forwards: 0')],
    ['TRACE, absolute-form', req('TRACE http://a.test/ HTTP/1.1', 'Host: a.test')],
    ['TRACE with a body', req('TRACE / HTTP/1.1', 'Host: a.test', 'Content-Length: 0')]
  ]) {
    const r = await sendRaw(s.proxy.url, bytes, { responses: 1 })
    t.equal(r.status, 405, `${name}: 405`)
    t.match(r.responses[0]?.headers.allow ?? '', /GET/, `${name}: with Allow`)
    t.notMatch(r.responses[0]?.headers.allow ?? '', /TRACE|CONNECT/, `${name}: Allow lists neither TRACE nor CONNECT`)
    t.notMatch(r.responses[0]?.body.toString() ?? '', /Host: a\.test/i, `${name}: the request is not echoed`)
    t.equal(upstreamBytes(), 0, `${name}: nothing upstream`)
  }

  const o = await sendRaw(s.proxy.url, req('OPTIONS * HTTP/1.1', 'Host: a.test'), { responses: 1 })
  t.ok(o.status >= 200 && o.status < 500, `OPTIONS *: answered by the proxy (${o.status})`)
  t.equal(upstreamBytes(), 0, 'OPTIONS *: never forwarded')
  const control = await sendRaw(s.proxy.url, req('OPTIONS /x HTTP/1.1', 'Host: a.test'), { responses: 1 })
  t.equal(control.status, 200, 'control: OPTIONS /x is forwarded')
  t.equal(s.a.received[0]?.method, 'OPTIONS')
})

t.test('absolute-form with an IP literal: 404 where routes name hosts; a catch-all route sends it to its own pool, never to the address', async (t) => {
  const s = await setup(t)
  const named = await sendRaw(s.proxy.url, req('GET http://127.0.0.1:9/x HTTP/1.1', 'Host: a.test'), { responses: 1 })
  t.equal(named.status, 404, 'no route serves 127.0.0.1: 404')
  t.equal(hits(s.a, s.b), 0)

  const target = await startUpstream('target')
  const pool = await startUpstream('pool')
  t.teardown(async () => { await target.close(); await pool.close() })
  const proxy = await proxyFor(t, `
pools: { p: { members: [{ url: "${pool.url}" }] } }
routes: [{ name: all, match: {}, pool: p }]
`)
  const r = await sendRaw(proxy.url, req(`GET http://127.0.0.1:${target.port}/x HTTP/1.1`, 'Host: a.test'), { responses: 1 })
  t.equal(r.status, 200, 'the catch-all route answers')
  t.equal(target.hits, 0, 'the address in the target is never contacted')
  t.equal(pool.hits, 1, 'the route\'s own pool is')
  t.equal(pool.received[0].headers.host, `127.0.0.1:${target.port}`, 'with the target\'s authority as Host (RFC 9112 section 3.2.2)')
})
