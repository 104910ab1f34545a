/** The reload planner: every change is found and classified live, rebuild or restart. */
import t from 'tap'
import { parseConfig } from '../../src/config/load.js'
import { carryRestartSettings, planReload, summarize, type Change } from '../../src/control/reload-plan.js'

const base = `
workers: 1
listen: { host: 127.0.0.1, port: 8080 }
admin: { port: 9901 }
pools:
  web:
    members: [{ url: "http://10.0.0.1:80" }, { url: "http://10.0.0.2:80", weight: 2 }]
    tls: { verify: true }
    timeouts: { connect_ms: 2000 }
  api: { members: [{ url: "http://10.0.0.3:80" }] }
routes:
  - { name: api, match: { path_prefix: /api }, pool: api }
  - { name: site, match: {}, pool: web }
sidecars:
  - { name: one, command: switchyard, args: [whoami, --port, "9001"] }
`
const cfg = (text: string) => parseConfig(text, 'plan.yaml', {})
const plan = (next: string): Change[] => planReload(cfg(base), cfg(next))
const edit = (from: string, to: string): string => {
  if (!base.includes(from)) throw new Error(`base has no ${from}`)
  return base.replace(from, to)
}
const byPath = (changes: Change[]) => Object.fromEntries(changes.map((c) => [c.path, c.class]))

t.test('the same config plans nothing', async (t) => {
  t.same(plan(base), [])
})

t.test('live: routes, pools, members, weights, balancers, health checks, outlier, splits, cache rules, sidecars', async (t) => {
  const next = `
workers: 1
listen: { host: 127.0.0.1, port: 8080 }
admin: { port: 9901, token: secret }
trusted_proxies: [10.0.0.0/8]
limits: { max_body_bytes: 1000, shutdown_timeout_ms: 3000 }
pools:
  web:
    balancer: least_request
    members: [{ url: "http://10.0.0.2:80", weight: 5 }, { url: "http://10.0.0.9:80" }]
    tls: { verify: true }
    timeouts: { connect_ms: 2000, request_ms: 1000 }
    health_check: { path: /up }
    outlier: { consecutive_failures: 2 }
  next: { members: [{ url: "http://10.0.0.4:80" }] }
routes:
  - name: site
    match: {}
    split: { name: ab, variants: [{ name: a, pool: web, weight: 1 }, { name: b, pool: next, weight: 1 }] }
  - { name: cached, match: { path_prefix: /c }, pool: web, cache: { enabled: true } }
sidecars:
  - { name: one, command: switchyard, args: [whoami, --port, "9009"] }
  - { name: two, command: switchyard, args: [whoami, --port, "9002"] }
`
  const changes = plan(next)
  t.same(summarize(changes), { live: changes.length, rebuild: 0, restart: 0 }, 'every change applies live')
  t.match(byPath(changes), {
    'admin.token': 'live',
    trusted_proxies: 'live',
    'limits.max_body_bytes': 'live',
    'limits.shutdown_timeout_ms': 'live',
    'pools.api': 'live',
    'pools.next': 'live',
    'pools.web.balancer': 'live',
    'pools.web.members[http://10.0.0.1:80]': 'live',
    'pools.web.members[http://10.0.0.9:80]': 'live',
    'pools.web.members[http://10.0.0.2:80].weight': 'live',
    'pools.web.timeouts.request_ms': 'live',
    'pools.web.health_check': 'live',
    'pools.web.outlier.consecutive_failures': 'live',
    'routes[api]': 'live',
    'routes[cached]': 'live',
    'routes[site].pool': 'live',
    'routes[site].split': 'live',
    'sidecars[one]': 'live',
    'sidecars[two]': 'live'
  })
  const detail = (p: string) => changes.find((c) => c.path === p)?.detail
  t.equal(detail('pools.web.members[http://10.0.0.2:80].weight'), '2 -> 5')
  t.equal(detail('pools.web.members[http://10.0.0.1:80]'), 'removed (its requests in flight finish)')
  t.equal(detail('sidecars[one]'), 'restarted (args changed)')
  t.equal(detail('sidecars[two]'), 'started')
  t.equal(detail('routes[api]'), 'removed')
})

t.test('rebuild: tls.verify, timeouts.connect_ms and max_connections of a pool whose members stay', async (t) => {
  const changes = plan(edit('tls: { verify: true }\n    timeouts: { connect_ms: 2000 }', 'tls: { verify: false }\n    timeouts: { connect_ms: 500 }\n    max_connections: 4'))
  t.same(byPath(changes), {
    'pools.web.timeouts.connect_ms': 'rebuild',
    'pools.web.max_connections': 'rebuild',
    'pools.web.tls.verify': 'rebuild'
  })
  t.match(changes.find((c) => c.path === 'pools.web.timeouts.connect_ms')?.detail, /^2000 -> 500: connection pool rebuilt for http:\/\/10\.0\.0\.1, http:\/\/10\.0\.0\.2; the old one finishes its requests$/)
})

t.test('a pool whose members are all new gets new connection pools anyway: live, not rebuild', async (t) => {
  const changes = plan(edit('members: [{ url: "http://10.0.0.1:80" }, { url: "http://10.0.0.2:80", weight: 2 }]\n    tls: { verify: true }', 'members: [{ url: "http://10.0.0.7:80" }]\n    tls: { verify: false }'))
  t.equal(byPath(changes)['pools.web.tls.verify'], 'live')
})

t.test('restart: listen, admin address, workers, limits the listener was built with, logging, cache store', async (t) => {
  const next = base
    .replace('workers: 1', 'workers: 4')
    .replace('listen: { host: 127.0.0.1, port: 8080 }', 'listen: { host: 0.0.0.0, port: 8081 }\nlimits: { keep_alive_timeout_ms: 1000 }\nlogging: { level: debug }\ncache: { store: memory, max_bytes: 1024 }')
    .replace('admin: { port: 9901 }', 'admin: { port: 9902 }')
  const changes = plan(next)
  t.same(byPath(changes), {
    workers: 'restart',
    'listen.host': 'restart',
    'listen.port': 'restart',
    'admin.port': 'restart',
    'limits.keep_alive_timeout_ms': 'restart',
    'logging.level': 'restart',
    'cache.store': 'restart',
    'cache.max_bytes': 'restart'
  })
  t.match(changes.find((c) => c.path === 'listen.port')?.detail, '8080 -> 8081: needs a restart (the running process keeps 8080)')
})

t.test('route order and member order are changes too', async (t) => {
  const swapped = edit('  - { name: api, match: { path_prefix: /api }, pool: api }\n  - { name: site, match: {}, pool: web }', '  - { name: site, match: {}, pool: web }\n  - { name: api, match: { path_prefix: /api }, pool: api }')
  t.same(plan(swapped).map((c) => [c.path, c.class]), [['routes', 'live']])
  const members = edit('members: [{ url: "http://10.0.0.1:80" }, { url: "http://10.0.0.2:80", weight: 2 }]', 'members: [{ url: "http://10.0.0.2:80", weight: 2 }, { url: "http://10.0.0.1:80" }]')
  t.same(plan(members).map((c) => [c.path, c.class]), [['pools.web.members', 'live']])
})

t.test('carryRestartSettings keeps what needs a restart, so the next plan reports it again', async (t) => {
  const running = cfg(base)
  const next = cfg(base.replace('port: 8080', 'port: 8081').replace('admin: { port: 9901 }', 'admin: { port: 9901, token: t2 }\nlimits: { max_body_bytes: 5, headers_timeout_ms: 5 }'))
  const carried = carryRestartSettings(running, next)
  t.equal(carried.listen[0].port, 8080, 'listen kept')
  t.equal(carried.admin.token, 't2', 'the admin token is live')
  t.equal(carried.limits.max_body_bytes, 5, 'a live limit is taken')
  t.equal(carried.limits.headers_timeout_ms, running.limits.headers_timeout_ms, 'a restart limit is kept')
  t.same(byPath(planReload(carried, next)), { 'listen.port': 'restart', 'limits.headers_timeout_ms': 'restart' }, 'reported again on the next reload')
})

t.test('secrets never reach a change\'s detail: URL credentials, route header values, sidecar env, the admin token', async (t) => {
  const withSecrets = (pw: string, key: string): string => `${base}cache: { store: redis, redis: { url: "redis://:${pw}@10.0.0.9:6379" } }
admin: { port: 9901, token: "${key}-token" }
`.replace('admin: { port: 9901 }\n', '').replace('{ name: api, match: { path_prefix: /api }, pool: api }', `{ name: api, match: { path_prefix: /api, headers: { x-api-key: "${key}" } }, pool: api }`)
    .replace('args: [whoami, --port, "9001"] }', `args: [whoami, --port, "9001"], env: { API_KEY: "${key}" } }`)
  const changes = planReload(cfg(withSecrets('oldpw', 'oldkey')), cfg(withSecrets('newpw', 'newkey')))
  const text = JSON.stringify(changes)
  for (const secret of ['oldpw', 'newpw', 'oldkey', 'newkey']) t.notMatch(text, secret, `${secret} is not shown`)
  t.match(byPath(changes), { 'cache.redis.url': 'restart', 'admin.token': 'live' })
  t.match(changes.find((c) => c.path === 'cache.redis.url')?.detail, /redis:\/\/\*\*\*@10\.0\.0\.9:6379/, 'the URL without its credentials')
  t.ok(changes.some((c) => /headers/.test(c.path) && c.detail === 'changed (value not shown)'), 'a route header value')
  t.ok(changes.some((c) => c.path === 'sidecars[one]'), 'a sidecar env change is listed (by name, without its value)')
})
