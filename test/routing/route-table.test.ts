import t from 'tap'
import { parseConfig } from '../../src/config/load.js'
import { RouteTable, normalizeHost } from '../../src/routing/route-table.js'

function table(routesYaml: string): RouteTable<string> {
  const c = parseConfig(`pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }\nroutes:\n${routesYaml}`, 't.yaml', {})
  return new RouteTable(c.routes.map((r) => ({ config: r, value: r.name })))
}

t.test('most specific host first, then first match in file order', async (t) => {
  const rt = table(`
  - { name: any-root, match: { path_prefix: / }, pool: p }
  - { name: wild, match: { host: "*.example.com", path_prefix: / }, pool: p }
  - { name: deep-wild, match: { host: "*.api.example.com" }, pool: p }
  - { name: exact-api, match: { host: example.com, path_prefix: /api }, pool: p }
  - { name: exact-root, match: { host: Example.com }, pool: p }
  - { name: exact-api-late, match: { host: example.com, path_prefix: /api/v2 }, pool: p }
`)
  t.equal(rt.match('example.com', '/api/v2/x', 'GET', {}), 'exact-api', 'first match in file order within a host group')
  t.equal(rt.match('example.com', '/other', 'GET', {}), 'exact-root')
  t.equal(rt.match('a.example.com', '/', 'GET', {}), 'wild')
  t.equal(rt.match('v1.api.example.com', '/', 'GET', {}), 'deep-wild', 'longest wildcard suffix wins')
  t.equal(rt.match('other.org', '/', 'GET', {}), 'any-root', 'routes without host are the fallback')
  t.equal(rt.match('xexample.com', '/', 'GET', {}), 'any-root', 'a wildcard needs a dot boundary')
})

t.test('path prefixes match whole segments unless they end in /', async (t) => {
  const rt = table(`
  - { name: api, match: { path_prefix: /api }, pool: p }
  - { name: static, match: { path_prefix: /static/ }, pool: p }
`)
  t.equal(rt.match('h', '/api', 'GET', {}), 'api')
  t.equal(rt.match('h', '/api/users', 'GET', {}), 'api')
  t.equal(rt.match('h', '/apix', 'GET', {}), undefined)
  t.equal(rt.match('h', '/static/a.css', 'GET', {}), 'static')
  t.equal(rt.match('h', '/static', 'GET', {}), undefined)
})

t.test('method and header conditions', async (t) => {
  const rt = table(`
  - { name: beta, match: { path_prefix: /, headers: { X-Beta: "1" } }, pool: p }
  - { name: writes, match: { path_prefix: /, methods: [POST, PUT] }, pool: p }
  - { name: rest, match: { path_prefix: / }, pool: p }
`)
  t.equal(rt.match('h', '/', 'GET', { 'x-beta': '1' }), 'beta')
  t.equal(rt.match('h', '/', 'GET', { 'x-beta': '2' }), 'rest')
  t.equal(rt.match('h', '/', 'POST', {}), 'writes')
  t.equal(rt.match('h', '/', 'GET', {}), 'rest')
})

t.test('host normalisation', async (t) => {
  t.equal(normalizeHost('Example.COM:8080'), 'example.com')
  t.equal(normalizeHost('example.com.'), 'example.com')
  t.equal(normalizeHost('[::1]:80'), '[::1]')
  t.equal(normalizeHost(''), undefined)
  t.equal(normalizeHost('a b'), undefined)
  t.equal(normalizeHost('host:port'), undefined)
  t.equal(normalizeHost('evil.com/x'), undefined)
  t.equal(normalizeHost(undefined), undefined)
})
