import t from 'tap'
import { rawExchange as raw } from '../fixtures/raw.js'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, HTTP1_ONLY } from '../fixtures/proxy.js'

t.test('header hygiene as seen by a real upstream, and by the client', HTTP1_ONLY, async (t) => {
  const up = await startUpstream('u', (req, res) => {
    res.writeHead(200, [
      'content-type', 'text/plain',
      'connection', 'close, x-secret-hop',
      'x-secret-hop', 'must-not-reach-client',
      'keep-alive', 'timeout=99',
      'proxy-authenticate', 'Basic',
      'upgrade', 'h2c',
      'x-kept', 'yes'
    ])
    res.end('ok')
  })
  const proxy = await startProxy(`
pools:
  p: { members: [{ url: "${up.url}" }] }
  rewrite: { host_header: upstream, members: [{ url: "${up.url}" }] }
routes:
  - { name: rw, match: { path_prefix: /rw }, pool: rewrite }
  - { name: all, match: {}, pool: p }
`)
  t.teardown(async () => { await proxy.close(); await up.close() })

  const res = await raw(proxy.url, [
    'GET /h?q=1 HTTP/1.1',
    'Host: shop.example.com:8080',
    'Connection: keep-alive, X-Drop-Me',
    'X-Drop-Me: 1',
    'Keep-Alive: timeout=5',
    'TE: trailers',
    'Trailer: X-T',
    'Upgrade: websocket',
    'Proxy-Authorization: Basic Zm9vOmJhcg==',
    'Proxy-Connection: keep-alive',
    'X-Forwarded-For: 6.6.6.6',
    'X-Forwarded-Host: evil.example',
    'X-Forwarded-Proto: https',
    'Forwarded: for=6.6.6.6;host=evil.example',
    'X-Real-IP: 6.6.6.6',
    'X-Original-URL: /admin',
    'X-HTTP-Method-Override: DELETE',
    'X-Request-Id: trace-123',
    'Via: 1.0 corp-proxy',
    'X-Custom: kept',
    '', ''
  ].join('\r\n'))
  const seen = up.received[0].headers
  t.equal(up.received[0].url, '/h?q=1')
  for (const h of ['x-drop-me', 'keep-alive', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection', 'forwarded', 'x-original-url', 'x-http-method-override']) {
    t.equal(seen[h], undefined, `${h} is not forwarded`)
  }
  t.not(seen.connection, 'keep-alive, X-Drop-Me', 'the client\'s Connection header is not forwarded')
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'untrusted X-Forwarded-For is replaced by the peer address')
  t.equal(seen['x-forwarded-host'], 'shop.example.com:8080')
  t.equal(seen['x-forwarded-proto'], 'http')
  t.equal(seen['x-real-ip'], '127.0.0.1')
  t.equal(seen.host, 'shop.example.com:8080', 'Host preserved by default')
  t.equal(seen.via, '1.0 corp-proxy, 1.1 switchyard')
  t.equal(seen['x-request-id'], 'trace-123', 'a valid X-Request-Id is propagated')
  t.equal(seen['x-custom'], 'kept')

  const [head] = res.split('\r\n\r\n')
  t.match(head, /^HTTP\/1\.1 200 OK/)
  t.match(head, /\r\nx-kept: yes/i)
  t.notMatch(head, /x-secret-hop/i, 'a header the upstream named in Connection is dropped')
  t.notMatch(head, /timeout=99/i, 'upstream Keep-Alive is dropped')
  t.notMatch(head, /proxy-authenticate/i)
  t.notMatch(head, /upgrade: h2c/i)
  t.match(head, /\r\nvia: 1\.1 switchyard/i)
  t.match(head, /\r\nx-request-id: trace-123/i)

  const r2 = await fetchText(`${proxy.url}/rw`, { headers: { 'x-request-id': 'bad id with spaces' } })
  t.equal(r2.status, 200)
  const seen2 = up.received[1].headers
  t.equal(seen2.host, new URL(up.url).host, 'host_header: upstream sends the member\'s host:port')
  t.match(seen2['x-request-id'], /^[0-9a-f-]{36}$/, 'an invalid request id is replaced by a new one')
  t.equal(r2.headers['x-request-id'], seen2['x-request-id'])
})

t.test('trusted proxies may set forwarding headers', async (t) => {
  const up = await startUpstream('u')
  const proxy = await startProxy(`
trusted_proxies: [127.0.0.0/8]
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  await fetchText(`${proxy.url}/`, { headers: { 'x-forwarded-for': '203.0.113.7, 127.0.0.2', 'x-forwarded-proto': 'https' } })
  const seen = up.received[0].headers
  t.equal(seen['x-forwarded-for'], '203.0.113.7, 127.0.0.2, 127.0.0.1')
  t.equal(seen['x-real-ip'], '203.0.113.7', 'client address is the right-most untrusted hop')
  t.equal(seen['x-forwarded-proto'], 'https')
})
