/**
 * POST /admin/cache/purge reads its body as JSON whatever the Content-Type says: `curl -d`
 * (application/x-www-form-urlencoded), text/plain or no Content-Type at all work like
 * application/json; a body that is not JSON gets 400 with a short, clear text. A URL given
 * without its port reaches the entry stored under the port.
 */
import t from 'tap'
import { request } from 'node:http'
import { fetchText, startProxy } from '../fixtures/proxy.js'
import { startUpstream } from '../fixtures/upstream.js'

/** A POST through node:http so no Content-Type is added when none is given. */
function rawPost(url: string, body: string, headers: Record<string, string>): Promise<{ status: number; body: string; type: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'content-length': String(Buffer.byteLength(body)), ...headers } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { text += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, type: res.headers['content-type'] }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

t.test('purge: a JSON body whatever the content type; 400 for a body that is not JSON', async (t) => {
  let version = 0
  const up = await startUpstream('up', (_req, res) => { version++; res.writeHead(200, { 'cache-control': 'max-age=300' }); res.end(`v${version}`) })
  t.teardown(() => up.close())
  const proxy = await startProxy(`
cache: { store: memory }
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: cached, match: {}, pool: web, cache: { enabled: true } }]
`)
  t.teardown(() => proxy.close())
  const port = new URL(proxy.url).port
  const purgeUrl = `${proxy.adminUrl}/admin/cache/purge`

  const cases: [string, Record<string, string>][] = [
    ['application/x-www-form-urlencoded (curl -d)', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['text/plain', { 'content-type': 'text/plain' }],
    ['no content type', {}],
    ['application/json', { 'content-type': 'application/json; charset=utf-8' }]
  ]
  for (const [name, headers] of cases) {
    const path = `/item-${name.replace(/[^a-z]/g, '')}`
    const first = await fetchText(`${proxy.url}${path}`)
    t.equal((await fetchText(`${proxy.url}${path}`)).body, first.body, `${name}: stored`)
    const r = await rawPost(purgeUrl, JSON.stringify({ url: `http://127.0.0.1:${port}${path}` }), headers)
    t.equal(r.status, 200, `${name}: ${r.body}`)
    t.equal(JSON.parse(r.body).purged, 1, `${name}: purged the entry`)
    t.not((await fetchText(`${proxy.url}${path}`)).body, first.body, `${name}: the next request goes upstream`)
  }

  // A host without its port: the entry stored under 127.0.0.1:<port>.
  const first = await fetchText(`${proxy.url}/noport`)
  const r = await rawPost(purgeUrl, JSON.stringify({ url: 'http://127.0.0.1/noport' }), { 'content-type': 'application/x-www-form-urlencoded' })
  t.equal(r.status, 200, r.body)
  t.equal(JSON.parse(r.body).purged, 1, 'a URL without its port reaches the entry stored with it')
  t.not((await fetchText(`${proxy.url}/noport`)).body, first.body)

  const bad = await rawPost(purgeUrl, 'url=http://127.0.0.1/x', { 'content-type': 'application/x-www-form-urlencoded' })
  t.equal(bad.status, 400)
  t.match(bad.type, /^text\/plain/)
  t.match(bad.body, /^400 Bad Request: the body is not JSON \(.+\); expected e\.g\. \{"url": "http:\/\/example\.com\/path"\}\n$/)
  const badJson = await rawPost(purgeUrl, '{"url": ', { 'content-type': 'application/json' })
  t.equal(badJson.status, 400)
  t.match(badJson.body, /^400 Bad Request: the body is not JSON/)
  const empty = await rawPost(purgeUrl, '', {})
  t.equal(empty.status, 400)
  t.equal(empty.body, '400 Bad Request: expected a JSON body such as {"url": "http://example.com/path"}\n')
  const wrongShape = await rawPost(purgeUrl, '[1, 2]', {})
  t.equal(wrongShape.status, 400, 'JSON that is not a purge request: 400 from the purge itself')
  t.match(JSON.parse(wrongShape.body), { error: /expected \{"url"/ })
})

t.test('mutating calls from another site\'s page (CSRF) or through a rebound name are refused on a loopback admin without a token', async (t) => {
  const up = await startUpstream('up')
  t.teardown(() => up.close())
  const proxy = await startProxy(`
cache: { store: memory }
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: cached, match: {}, pool: web, cache: { enabled: true } }]
`)
  t.teardown(() => proxy.close())
  const admin = new URL(proxy.adminUrl)
  const body = JSON.stringify({ host: 'shop', prefix: '/', all_paths: true })
  const drain = `${proxy.adminUrl}/admin/pools/web/members/${new URL(up.url).host}/drain`
  const refused: [string, string, Record<string, string>][] = [
    ['a no-cors fetch from another origin', `${proxy.adminUrl}/admin/cache/purge`, { 'content-type': 'text/plain', origin: 'https://evil.example' }],
    ['a form posted cross-site (Fetch Metadata)', drain, { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'cross-site' }],
    ['an opaque origin', `${proxy.adminUrl}/admin/reload`, { origin: 'null' }],
    ['DNS rebinding: the page\'s own name as Host', `${proxy.adminUrl}/admin/cache/purge`, { host: `evil.example:${admin.port}`, origin: `http://evil.example:${admin.port}` }]
  ]
  for (const [name, url, headers] of refused) {
    const r = await rawPost(url, body, headers)
    t.equal(r.status, 403, `${name}: ${r.body.trim()}`)
  }
  t.equal(JSON.parse((await fetchText(`${proxy.adminUrl}/admin/pools`)).body).pools.web.members[0].drained, false, 'nothing was drained')
  // The same calls from curl or a script (no Origin), or from the status page itself (same origin), work.
  t.equal((await rawPost(`${proxy.adminUrl}/admin/cache/purge`, body, { 'content-type': 'application/json' })).status, 200, 'curl')
  t.equal((await rawPost(`${proxy.adminUrl}/admin/cache/purge`, body, { origin: `http://${admin.host}`, 'sec-fetch-site': 'same-origin' })).status, 200, 'same origin')
  t.equal((await rawPost(`${proxy.adminUrl}/admin/cache/purge`, body, { host: `localhost:${admin.port}` })).status, 200, 'Host: localhost')
})
