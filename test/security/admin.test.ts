/**
 * The admin listener: loopback by default; off loopback, mutating calls (reload, purge) need
 * admin.token as a bearer token and are refused without one; purge requests cannot wipe the
 * keyspace by accident; the proxy listener never exposes the admin API.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { parseConfig } from '../../src/config/load.js'
import { spawnCli } from '../fixtures/cli.js'
import { deadPort, startUpstream } from '../fixtures/upstream.js'
import { fetchText, waitFor, type Answer } from '../fixtures/proxy.js'
import { proxyFor, type Teardown } from '../fixtures/security.js'

const post = (url: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> =>
  fetchText(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } })

/** A proxy whose admin config is `admin` (the fixture listens on 127.0.0.1 either way), with a caching route and a config file to reload from. */
async function setup(t: Teardown, admin: string) {
  const up = await startUpstream('u', (_q, res) => { res.writeHead(200, { 'cache-control': 'public, max-age=60' }); res.end('ok') })
  t.teardown(() => up.close())
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-admin-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const proxy = await proxyFor(t, `
admin: ${admin}
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: p, cache: { enabled: true } }]
`, { configPath: join(dir, 'upstreams.yaml') })
  const get = (path: string): Promise<Answer> => fetchText(`${proxy.url}${path}`, { headers: { host: 'a.test' } })
  return { up, proxy, get }
}

t.test('the admin listener binds to loopback by default', async (t) => {
  const config = parseConfig('pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }\nroutes: []\n', 'default.yaml', {})
  t.equal(config.admin.host, '127.0.0.1', 'admin.host defaults to 127.0.0.1')

  // The real process: start it without admin.host and look at what it bound.
  const [proxyPort, adminPort] = [await deadPort(), await deadPort()]
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-admin-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'upstreams.yaml')
  writeFileSync(file, `
workers: 1
listen: { host: 127.0.0.1, port: ${proxyPort} }
admin: { port: ${adminPort} }
pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: []
`)
  const proc = spawnCli(['start', '--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  await waitFor(() => proc.lines.some((l) => l.includes('switchyard listening')), 10000, 'the process to listen')
  const line = JSON.parse(proc.lines.find((l) => l.includes('switchyard listening')) as string) as { admin: string }
  t.equal(new URL(line.admin).hostname, '127.0.0.1', `admin bound to ${line.admin}`)
  t.equal((await fetchText(`http://127.0.0.1:${adminPort}/healthz`)).status, 200, 'reachable on loopback')
  const external = Object.values(networkInterfaces()).flat().find((i) => i !== undefined && !i.internal && i.family === 'IPv4')
  if (external === undefined) {
    t.pass('no non-loopback IPv4 interface here: the bound address above is the check')
  } else {
    const r = await fetchText(`http://${external.address}:${adminPort}/healthz`).then((a) => a.status, (e: Error & { code?: string; cause?: { code?: string } }) => e.cause?.code ?? e.code ?? 'error')
    t.equal(r, 'ECONNREFUSED', `not reachable on ${external.address}`)
  }
  proc.child.kill('SIGTERM')
  t.equal((await proc.exited).code, 0)
})

t.test('off loopback without a token: mutating calls are refused with 403', async (t) => {
  const s = await setup(t, '{ host: 0.0.0.0 }')
  const admin = s.proxy.adminUrl
  await s.get('/kept')
  const reload = await post(`${admin}/admin/reload`, {})
  t.equal(reload.status, 403, 'reload: 403')
  const purge = await post(`${admin}/admin/cache/purge`, { host: 'a.test', prefix: '/', all_paths: true })
  t.equal(purge.status, 403, 'purge: 403')
  const withBearer = await post(`${admin}/admin/cache/purge`, { host: 'a.test', prefix: '/', all_paths: true }, { authorization: 'Bearer anything' })
  t.equal(withBearer.status, 403, 'purge with some bearer token: still 403 (there is no token to match)')
  t.equal((await post(`${admin}/admin/splits/any/reset`, {})).status, 403, 'split reset: 403')
  t.equal((await post(`${admin}/admin/splits/any/variants/v/promote`, {})).status, 403, 'split promote: 403')
  t.equal((await s.get('/kept')).headers['x-cache'], 'HIT', 'nothing was purged')
  for (const path of ['/healthz', '/readyz', '/metrics']) t.equal((await fetchText(`${admin}${path}`)).status, 200, `${path}: read-only endpoints answer`)
})

t.test('with a token: missing or wrong bearer gets 401, the right one works', async (t) => {
  const token = 's3cret-token-0123456789'
  const s = await setup(t, `{ host: 0.0.0.0, token: "${token}" }`)
  const admin = s.proxy.adminUrl
  await s.get('/p/1')
  const wrong: [string, Record<string, string>][] = [
    ['no Authorization', {}],
    ['wrong token, same length', { authorization: `Bearer ${'x'.repeat(token.length)}` }],
    ['wrong token, shorter', { authorization: 'Bearer s3cret' }],
    ['right token with a suffix', { authorization: `Bearer ${token}x` }],
    ['right token without the Bearer scheme', { authorization: token }],
    ['Basic scheme', { authorization: `Basic ${Buffer.from(`admin:${token}`).toString('base64')}` }],
    ['token in another header', { 'x-admin-token': token }]
  ]
  for (const [name, headers] of wrong) {
    const r = await post(`${admin}/admin/cache/purge`, { url: 'http://a.test/p/1' }, headers)
    t.equal(r.status, 401, `purge, ${name}: 401`)
    t.match(String(r.headers['www-authenticate']), /^Bearer/, `purge, ${name}: WWW-Authenticate: Bearer`)
    t.equal((await post(`${admin}/admin/reload`, {}, headers)).status, 401, `reload, ${name}: 401`)
    t.equal((await post(`${admin}/admin/splits/any/variants/v/promote`, {}, headers)).status, 401, `split promote, ${name}: 401`)
  }
  t.equal((await post(`${admin}/admin/splits/any/reset`, {}, { authorization: `Bearer ${token}` })).status, 404, 'split reset with the right token: past the check (no such split)')
  t.equal((await s.get('/p/1')).headers['x-cache'], 'HIT', 'nothing was purged by the refused calls')
  const ok = await post(`${admin}/admin/cache/purge`, { url: 'http://a.test/p/1' }, { authorization: `Bearer ${token}` })
  t.equal(ok.status, 200, 'purge with the right token: 200')
  t.equal((await s.get('/p/1')).headers['x-cache'], 'MISS', 'and it purged')
  const reload = await post(`${admin}/admin/reload`, {}, { authorization: `Bearer ${token}` })
  t.equal(reload.status, 200, 'reload with the right token: 200')
})

t.test('purge patterns cannot wipe the keyspace', async (t) => {
  const s = await setup(t, '{}')
  const admin = s.proxy.adminUrl
  for (const p of ['/a/1', '/a/2', '/b/1']) await s.get(p)
  const refused: [string, unknown][] = [
    ['prefix "/" without all_paths', { host: 'a.test', prefix: '/' }],
    ['prefix "/" with all_paths: "true" (a string)', { host: 'a.test', prefix: '/', all_paths: 'true' }],
    ['a prefix without a host', { prefix: '/a/' }],
    ['an empty prefix', { host: 'a.test', prefix: '' }],
    ['a prefix not starting with /', { host: 'a.test', prefix: '*' }],
    ['a host without a prefix', { host: 'a.test' }],
    ['an empty body', {}],
    ['a JSON array', [{ host: 'a.test', prefix: '/', all_paths: true }]],
    ['a relative url', { url: '/a/1' }],
    ['a url with an encoded slash', { url: 'http://a.test/a%2f1' }]
  ]
  for (const [name, body] of refused) {
    const r = await post(`${admin}/admin/cache/purge`, body)
    t.equal(r.status, 400, `${name}: 400`)
  }
  const wild = await post(`${admin}/admin/cache/purge`, { host: '*', prefix: '/', all_paths: true })
  t.ok(wild.status === 200 || wild.status === 400, `host "*" is not a wildcard (${wild.status})`)
  for (const p of ['/a/1', '/a/2', '/b/1']) t.equal((await s.get(p)).headers['x-cache'], 'HIT', `${p} survived every refused or foreign purge`)
  const prefix = await post(`${admin}/admin/cache/purge`, { host: 'a.test', prefix: '/a/' })
  t.equal(prefix.status, 200, 'a real prefix purge works')
  t.equal((await s.get('/a/1')).headers['x-cache'], 'MISS', '/a/1 purged')
  t.equal((await s.get('/b/1')).headers['x-cache'], 'HIT', '/b/1 untouched')
  const all = await post(`${admin}/admin/cache/purge`, { host: 'a.test', prefix: '/', all_paths: true })
  t.equal(all.status, 200, 'the whole host only with all_paths: true')
  t.equal((await s.get('/b/1')).headers['x-cache'], 'MISS')
})

t.test('the proxy listener does not expose the admin API', async (t) => {
  const s = await setup(t, '{}')
  await s.get('/kept')
  for (const path of ['/admin/cache/purge', '/admin/reload']) {
    const r = await fetchText(`${s.proxy.url}${path}`, { method: 'POST', body: JSON.stringify({ host: 'a.test', prefix: '/', all_paths: true }), headers: { host: 'a.test', 'content-type': 'application/json' } })
    t.not(r.body, '{"ok":true,"started":[],"stopped":[]}', `${path} on the proxy listener is not the admin API`)
  }
  t.ok(s.up.received.some((q) => q.url === '/admin/cache/purge'), 'it is just a path, proxied like any other')
  t.equal((await s.get('/kept')).headers['x-cache'], 'HIT', 'nothing was purged')
})
