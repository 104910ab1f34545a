import t from 'tap'
import { createSecureServer } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { generateSelfSigned } from '../../src/tls/self-signed.js'
import { fetchText, startProxy } from '../fixtures/proxy.js'

t.test('pool http2: true speaks HTTP/2 to an https member (undici allowH2); HTTP/1.1 clients are unaffected', async (t) => {
  const { cert, key } = await generateSelfSigned()
  const versions: string[] = []
  // An HTTP/2-only member: it refuses HTTP/1.1, so an answer proves the proxy spoke h2 to it.
  const member = createSecureServer({ cert, key, allowHTTP1: false }, (req, res) => {
    versions.push(req.httpVersion)
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`${req.method} ${req.url} ${String(req.headers[':authority'])}`)
  })
  await new Promise<void>((resolve) => member.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => member.close(() => resolve())))
  const url = `https://127.0.0.1:${(member.address() as AddressInfo).port}`
  const proxy = await startProxy(`
pools:
  h2: { http2: true, tls: { verify: false }, members: [{ url: "${url}" }] }
routes: [{ name: r, match: {}, pool: h2 }]
`)
  t.teardown(() => proxy.close())
  for (let i = 0; i < 3; i++) {
    const a = await fetchText(`${proxy.url}/x${i}`, { headers: { host: 'site.test' } })
    t.equal(a.status, 200)
    t.equal(a.body, `GET /x${i} site.test`, 'the client Host became :authority')
  }
  t.same(versions, ['2.0', '2.0', '2.0'])
})
