/**
 * Address targets the SSRF guard must refuse with `allow: [{ host: "*" }]`.
 * - numeric host names (2130706433, 0x7f.1, 127.1) pass checkTarget as *names*, but the origin's
 *   undici pool is keyed by new URL(...).origin = http://127.0.0.1, and net.connect skips the
 *   lookup for an IP literal: the connect-time guard never runs.
 * - [::ffff:7f00:1] (IPv4-mapped in hex form) is not unmapped and specialAddress() skips the IPv4
 *   lists for an IPv6 family, so it is "public".
 */
import t from 'tap'
import { type TestProxy } from '../fixtures/proxy.js'
import { startUpstream } from '../fixtures/upstream.js'
import { connectVia, viaProxy, startForwardProxy } from './forward-setup.js'
import { parseAuthority } from '../../src/forward/forward-target.js'
import { specialAddress, unmapAddress } from '../../src/forward/destination-rules.js'

type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

function forwardProxy(t: Tap): Promise<TestProxy & { forwardUrl: string }> {
  return startForwardProxy(t, '  clients: [127.0.0.1]\n  connect_ports: [443, 1, 65535]\n  allow: [{ host: "*" }]')
}

t.test('numeric and mapped spellings of 127.0.0.1 are refused as loopback', async (t) => {
  const up = await startUpstream('internal')
  t.teardown(() => up.close())
  const proxy = await forwardProxy(t)
  for (const host of ['2130706433', '0x7f.1', '127.1', '0177.0.0.1', '0', '[::ffff:7f00:1]', '[::ffff:127.0.0.1]']) {
    const r = await viaProxy(proxy.forwardUrl, `http://${host}:${up.port}/secret`)
    t.equal(r.status, 403, `${host} is refused`)
  }
  t.equal(up.hits, 0, 'nothing reached the loopback service')
})

t.test('CONNECT to an IPv4-mapped loopback in hex form is refused', async (t) => {
  const up = await startUpstream('internal')
  t.teardown(() => up.close())
  const proxy = await forwardProxy(t)
  // Listen on a port CONNECT allows is not possible (443); the refusal is by the SSRF rule, checked before the connect.
  const c = await connectVia(proxy.forwardUrl, '[::ffff:7f00:1]:443')
  c.socket.destroy()
  t.equal(c.status, 403, 'refused by the SSRF guard, not a 502 after trying to connect')
})

t.test('hosts are canonicalised as the URL parser reads them; both mapped spellings unmap', async (t) => {
  t.same(parseAuthority('0x7f.1:80', undefined), { host: '127.0.0.1', port: 80 })
  t.same(parseAuthority('2130706433', 80), { host: '127.0.0.1', port: 80 })
  t.same(parseAuthority('[::FFFF:127.0.0.1]:443', undefined), { host: '::ffff:7f00:1', port: 443 })
  t.same(parseAuthority('Example.COM.:8080', undefined), { host: 'example.com', port: 8080 })
  for (const bad of ['xn--a', '09', '256.1.1.1', '1.2.3.999999']) t.equal(parseAuthority(bad, 80), undefined, `${bad} is invalid`)
  t.equal(unmapAddress('::ffff:7f00:1'), '127.0.0.1')
  t.equal(unmapAddress('::ffff:127.0.0.1'), '127.0.0.1')
  t.equal(unmapAddress('[::ffff:a9fe:a9fe]'), '169.254.169.254')
  t.equal(unmapAddress('2001:db8::ffff:1:2'), '2001:db8::ffff:1:2', 'not a mapped address')
  t.equal(specialAddress('::ffff:a00:1'), 'private')
})
