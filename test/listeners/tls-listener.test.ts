import t from 'tap'
import { rename, writeFile } from 'node:fs/promises'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { connect as netConnect } from 'node:net'
import { Agent, request } from 'undici'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, waitFor } from '../fixtures/proxy.js'
import { h2Connect, h2Request } from '../fixtures/h2.js'
import { certDir, writePair } from '../tls/tls-fixtures.js'

const insecure = new Agent({ connect: { rejectUnauthorized: false }, keepAliveTimeout: 1000 })
t.teardown(() => insecure.close())

async function https(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const r = await request(url, { dispatcher: insecure, headers })
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() }
}

/** The fingerprint of the certificate a new TLS connection gets for `servername`. */
function servedFingerprint(port: number, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      resolve(s.getPeerX509Certificate()?.fingerprint256 ?? '')
      s.end()
    })
    s.on('error', reject)
  })
}

t.test('a plain and a TLS listener side by side: HTTP/2 and HTTP/1.1 by ALPN, X-Forwarded-Proto, HSTS', async (t) => {
  const up = await startUpstream('o')
  const proxy = await startProxy(`
listen:
  - { name: plain, host: 127.0.0.1, port: 0 }
  - { name: secure, host: 127.0.0.1, port: 0, tls: { self_signed: true, hsts: { max_age_s: 600, include_subdomains: true } } }
pools: { o: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: o }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  t.equal(proxy.urls.length, 2)
  t.match(proxy.urls[1], /^https:\/\/127\.0\.0\.1:\d+$/)
  const plain = await fetchText(`${proxy.urls[0]}/a`)
  t.equal(plain.status, 200)
  t.equal(plain.headers['strict-transport-security'], undefined, 'never HSTS over plain HTTP (RFC 6797 section 7.2)')
  t.equal(JSON.parse(plain.body).headers['x-forwarded-proto'], 'http')

  const h1 = await https(`${proxy.urls[1]}/b`)
  t.equal(h1.status, 200)
  t.equal(JSON.parse(h1.body).headers['x-forwarded-proto'], 'https')
  t.equal(h1.headers['strict-transport-security'], 'max-age=600; includeSubDomains')

  const s = await h2Connect(proxy.urls[1])
  t.teardown(() => s.close())
  t.equal(s.alpnProtocol, 'h2', 'ALPN picked h2')
  const h2 = await h2Request(s, '/c')
  t.equal(h2.status, 200)
  t.equal(h2.headers['strict-transport-security'], 'max-age=600; includeSubDomains')
  const seen = JSON.parse(h2.body) as { headers: Record<string, string> }
  t.equal(seen.headers['x-forwarded-proto'], 'https')
  t.equal(seen.headers.via, '2 switchyard')

  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  t.match(metrics, /switchyard_tls_handshakes_total\{listener="secure",version="TLSv1\.3",alpn="h2"\} 1/)
  t.match(metrics, /switchyard_tls_handshakes_total\{listener="secure",version="TLSv1\.3",alpn="http\/1\.1"\} \d/)
  t.match(metrics, /switchyard_tls_certificate_expiry_timestamp_seconds\{listener="secure",certificate="self-signed"[^}]*\} \d+/)
  t.match(metrics, /switchyard_http2_sessions_total\{listener="secure"\} 1/)
})

t.test('redirect_https: plain requests get a permanent redirect, ACME challenges are still served', async (t) => {
  const up = await startUpstream('o')
  const proxy = await startProxy(`
listen: { host: 127.0.0.1, port: 0, redirect_https: { port: 8443 } }
pools: { o: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: o }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const r = await fetchText(`${proxy.url}/path/x?q=1`, { headers: { host: 'www.example.test:8080' } })
  t.equal(r.status, 308)
  t.equal(r.headers.location, 'https://www.example.test:8443/path/x?q=1')
  t.equal(up.hits, 0)
  const acme = await fetchText(`${proxy.url}/.well-known/acme-challenge/tok`, { headers: { host: 'www.example.test' } })
  t.equal(acme.status, 200, 'the HTTP-01 challenge reaches the member')
  const bad = await fetchText(`${proxy.url}/`, { headers: { host: 'a b' } })
  t.equal(bad.status, 400)
})

t.test('certificates by SNI, and a certificate replaced on disk under load fails no request', async (t) => {
  const dir = await certDir(t)
  const a1 = await writePair(dir, 'a', ['a.test'])
  const wild = await writePair(dir, 'wild', ['*.b.test'])
  const up = await startUpstream('o')
  const proxy = await startProxy(`
listen:
  - host: 127.0.0.1
    port: 0
    tls:
      watch_interval_ms: 50
      certificates:
        - { cert: "${a1.cert}", key: "${a1.key}" }
        - { cert: "${wild.cert}", key: "${wild.key}" }
pools: { o: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: o }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const port = Number(new URL(proxy.url).port)
  t.equal(await servedFingerprint(port, 'a.test'), a1.fingerprint256)
  t.equal(await servedFingerprint(port, 'x.b.test'), wild.fingerprint256, 'wildcard')
  t.equal(await servedFingerprint(port, 'other.test'), a1.fingerprint256, 'the first certificate is the default')

  // Load over both protocols while the files change: kept-alive connections and new ones.
  const s = await h2Connect(proxy.url, { servername: 'a.test' })
  t.teardown(() => s.close())
  let failures = 0
  let done = 0
  let stop = false
  const loop = async (fn: () => Promise<number>): Promise<void> => {
    while (!stop) {
      const status = await fn().catch(() => 0)
      if (status !== 200) failures++
      done++
    }
  }
  const loops = [
    loop(async () => (await h2Request(s, '/h2')).status),
    loop(async () => (await https(`${proxy.url}/h1`, { host: 'a.test' })).status),
    loop(async () => (await h2Request(proxy.url, '/new')).status)
  ]
  await waitFor(() => done > 30, 5000, 'load running')
  // certbot writes new files and swaps them in; write both, then rename over the old ones.
  const a2 = await writePair(dir, 'a-next', ['a.test'])
  await writeFile(`${a1.key}.tmp`, a2.keyPem)
  await writeFile(`${a1.cert}.tmp`, a2.certPem)
  await rename(`${a1.key}.tmp`, a1.key)
  await rename(`${a1.cert}.tmp`, a1.cert)
  await waitFor(async () => (await servedFingerprint(port, 'a.test')) === a2.fingerprint256, 5000, 'the new certificate served')
  const after = done
  await waitFor(() => done > after + 30, 5000, 'more load after the switch')
  stop = true
  await Promise.all(loops)
  t.equal(failures, 0, `no failed request out of ${done}`)
  t.equal((await h2Request(s, '/still')).status, 200, 'the connection opened before the switch still works')
  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  t.match(metrics, /switchyard_tls_certificate_reloads_total\{listener="127\.0\.0\.1:0",result="success"\} [1-9]/)
})

t.test('garbage and plain HTTP on a TLS port are counted and answered by nothing else', async (t) => {
  const up = await startUpstream('o')
  const proxy = await startProxy(`
listen: { name: s, host: 127.0.0.1, port: 0, tls: { self_signed: true } }
limits: { headers_timeout_ms: 500 }
pools: { o: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: o }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const port = Number(new URL(proxy.url).port)
  for (const bytes of ['GET / HTTP/1.1\r\nHost: x\r\n\r\n', '\x16\x03\x01\x00\x05garbage-garbage', '\x00\x01\x02\x03']) {
    await new Promise<void>((resolve) => {
      const c = netConnect(port, '127.0.0.1', () => c.write(bytes))
      c.on('error', () => resolve())
      c.on('close', () => resolve())
      c.resume()
    })
  }
  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  t.match(metrics, /switchyard_tls_handshake_failures_total\{listener="s",reason="http_request"\} 1/, 'plain HTTP counted')
  t.match(metrics, /switchyard_tls_handshake_failures_total\{listener="s",reason="timeout"\} 1/, 'a stalled handshake times out (limits.headers_timeout_ms)')
  t.equal((await https(`${proxy.url}/`)).status, 200, 'still serving')
  t.equal(up.hits, 1)
})

t.test('a missing or mismatched certificate fails startup naming the file', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const b = await writePair(dir, 'b', ['b.test'])
  const cfg = (cert: string, key: string): string => `
listen: { host: 127.0.0.1, port: 0, tls: { certificates: [{ cert: "${cert}", key: "${key}" }] } }
pools: { o: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: [{ name: r, match: {}, pool: o }]
`
  await t.rejects(startProxy(cfg(`${dir}/missing.pem`, a.key)), { message: new RegExp(`${dir}/missing\\.pem`) })
  await t.rejects(startProxy(cfg(a.cert, b.key)), { message: new RegExp(`${b.key}.*does not match|does not match.*${a.cert}`) })
})

t.test('a reload reads the certificate files again (no watch), and reports the change as live', async (t) => {
  const dir = await certDir(t)
  const a1 = await writePair(dir, 'a', ['a.test'])
  const up = await startUpstream('o')
  const yaml = (cert: string, key: string): string => `
listen: { host: 127.0.0.1, port: 0, tls: { watch_interval_ms: 0, certificates: [{ cert: "${cert}", key: "${key}" }] } }
pools: { o: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: o }]
`
  const file = join(dir, 'upstreams.yaml')
  const proxy = await startProxy(yaml(a1.cert, a1.key), { configPath: file })
  t.teardown(async () => { await proxy.close(); await up.close() })
  const port = Number(new URL(proxy.url).port)
  t.equal(await servedFingerprint(port, 'a.test'), a1.fingerprint256)
  // Same file names, new contents: only a reload reads them.
  const a2 = await writePair(dir, 'a', ['a.test'])
  t.equal(await servedFingerprint(port, 'a.test'), a1.fingerprint256, 'not watched: still the old one')
  await proxy.app.reload()
  t.equal(await servedFingerprint(port, 'a.test'), a2.fingerprint256, 'the reload loaded the new pair')
  // A listed pair that does not match keeps the old certificates.
  const b = await writePair(dir, 'b', ['b.test'])
  writeFileSync(file, yaml(a1.cert, b.key))
  const answer = await proxy.app.reload()
  t.equal(answer.ok, false, 'a pair that does not match rejects the reload')
  t.match(answer, { error: /does not match/ })
  t.equal(await servedFingerprint(port, 'a.test'), a2.fingerprint256, 'and the certificates served stay')
})
