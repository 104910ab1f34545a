/** Defects found in review, each reproduced against real servers before the fix. */
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchOnce, fetchText, startProxy, waitFor, HTTP1_ONLY } from '../fixtures/proxy.js'
import { rawExchange, statusOf } from '../fixtures/raw.js'

t.test('default_ttl_s never shares an answer to an authorized request', async (t) => {
  const up = await startUpstream('u', (req, res) => { res.end(`private data for ${req.headers.authorization ?? 'nobody'}`) })
  const proxy = await startProxy(`
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: api, match: {}, pool: web, cache: { enabled: true, default_ttl_s: 60 } }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  await fetchText(`${proxy.url}/me`, { headers: { authorization: 'Bearer alice' } })
  const bob = await fetchText(`${proxy.url}/me`, { headers: { authorization: 'Bearer bob' } })
  const anon = await fetchText(`${proxy.url}/me`)
  t.equal(bob.body, 'private data for Bearer bob')
  t.equal(anon.body, 'private data for nobody')
})

t.test('an absolute-form target replaces Host, upstream and cache alike (no poisoning)', HTTP1_ONLY, async (t) => {
  const up = await startUpstream('u', (req, res) => { res.writeHead(200, { 'cache-control': 'public, max-age=60' }).end(`content for host ${req.headers.host}`) })
  const proxy = await startProxy(`
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: site, match: { host: victim.example }, pool: web, cache: { enabled: true } }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const attack = await rawExchange(proxy.url, 'GET http://victim.example/page HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n')
  t.match(attack, /content for host victim\.example/)
  t.equal(up.received[0].headers.host, 'victim.example')
  const victim = await fetchText(`${proxy.url}/page`, { headers: { host: 'victim.example' } })
  t.equal(victim.body, 'content for host victim.example')
})

t.test('a 304 that does not match the stored response is not served to an unconditional GET', async (t) => {
  let n = 0
  const lm = new Date(Date.now() - 60000).toUTCString()
  const up = await startUpstream('u', (req, res) => {
    if (req.headers['if-modified-since'] !== undefined) { res.writeHead(304, { 'cache-control': 'max-age=0' }).end(); return }
    n++
    res.writeHead(200, { 'cache-control': 'max-age=0', 'last-modified': lm, 'content-length': '6' }).end(`body-${n}`)
  })
  const proxy = await startProxy(`
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: web, cache: { enabled: true } }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  await fetchText(`${proxy.url}/x`)
  for (let i = 0; i < 3; i++) {
    const r = await fetchText(`${proxy.url}/x`)
    t.equal(r.status, 200, 'a plain GET never gets 304')
    t.match(r.body, /^body-\d$/)
  }
})

t.test('a client that leaves during a cache miss does not stall the URL', HTTP1_ONLY, async (t) => {
  let hold = true
  const up = await startUpstream('u', (_req, res) => {
    const answer = (): void => { res.writeHead(200, { 'cache-control': 'public, max-age=60' }).end('ok') }
    if (hold) { hold = false; setTimeout(answer, 300) } else answer()
  })
  const proxy = await startProxy(`
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: web, cache: { enabled: true } }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const { port } = new URL(proxy.url)
  const req = request({ host: '127.0.0.1', port, path: '/slow' })
  req.on('error', () => {})
  req.end()
  await waitFor(() => up.hits === 1, 3000, 'the miss to reach the upstream')
  req.destroy()
  // Before the fix this waited forever on the abandoned fill: bound it.
  const next = await fetchOnce(`${proxy.url}/slow`, 3000)
  t.equal(next.status, 200)
  t.equal(next.body, 'ok')
})

t.test('an upstream that answers before the upload ends: the client connection is closed after it', HTTP1_ONLY, async (t) => {
  const up = await startUpstream('u', (_req, res) => { res.writeHead(413).end('too big') })
  const proxy = await startProxy(`
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: web }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const { port } = new URL(proxy.url)
  const answer = await new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/up', headers: { 'content-length': '10000000' } }, (res) => {
      res.resume()
      resolve({ status: res.statusCode ?? 0, connection: res.headers.connection })
      req.destroy()
    })
    req.on('error', reject)
    req.write(Buffer.alloc(1000))
  })
  t.equal(answer.status, 413)
  t.equal(answer.connection, 'close')
})

t.test('DELETE without a body is retried like any idempotent request', HTTP1_ONLY, async (t) => {
  const bad = await startUpstream('bad', (req, res) => { req.resume(); res.writeHead(503).end('no') })
  const good = await startUpstream('good', (req, res) => { req.resume(); res.end('deleted') })
  const proxy = await startProxy(`
pools: { web: { members: [{ url: "${bad.url}" }, { url: "${good.url}" }], outlier: { consecutive_failures: 0 } } }
routes: [{ name: r, match: {}, pool: web }]
`)
  t.teardown(async () => { await proxy.close(); await bad.close(); await good.close() })
  const r = await rawExchange(proxy.url, 'DELETE /thing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.equal(statusOf(r), 200)
  t.equal(bad.hits, 1)
  t.equal(good.hits, 1)
})

t.test('a member ejected before a reload comes back after its ejection', async (t) => {
  const good = await startUpstream('good')
  let fail = true
  const flaky = await startUpstream('flaky', (_req, res) => { res.writeHead(fail ? 500 : 200).end('x') })
  const dir = mkdtempSync(join(tmpdir(), 'sy-ej-'))
  const file = join(dir, 'upstreams.yaml')
  const yaml = (extra: string): string => `
pools:
  web: { members: [{ url: "${good.url}" }, { url: "${flaky.url}" }], outlier: { consecutive_failures: 2, base_ejection_ms: 300 } }
routes: [{ name: r, match: {}, pool: web, retries: { attempts: 0 } }${extra}]
`
  const proxy = await startProxy(yaml(''), { configPath: file })
  t.teardown(async () => { await proxy.close(); await good.close(); await flaky.close() })
  for (let i = 0; i < 4; i++) await fetchText(`${proxy.url}/`)
  t.equal(proxy.app.runtime().pools.get('web')!.members[1].available, false, 'ejected')
  fail = false
  writeFileSync(file, yaml(', { name: extra, match: { path_prefix: /extra }, pool: web }'))
  t.equal((await fetchText(`${proxy.adminUrl}/admin/reload`, { method: 'POST' })).status, 200)
  await waitFor(() => proxy.app.runtime().pools.get('web')!.members[1].available, 3000, 'the member to return after the reload')
  const before = flaky.hits
  for (let i = 0; i < 6; i++) await fetchText(`${proxy.url}/`)
  t.ok(flaky.hits > before, 'it takes traffic again')
})
