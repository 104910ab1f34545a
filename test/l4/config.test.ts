import t from 'tap'
import { ConfigError, parseConfig } from '../../src/config/load.js'
import { planReload, carryRestartSettings } from '../../src/control/reload-plan.js'

const ROUTES = `
routes:
  - { name: default, match: { path_prefix: / }, pool: web }`

function problems(yaml: string): string[] {
  try {
    parseConfig(yaml, 'l4.yaml', {})
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.issues.map((i) => `${i.path.map(String).join('.')}: ${i.message}`)
  }
}

t.test('a valid L4 config: defaults for the tcp and udp blocks, health check type from the pool', async (t) => {
  const c = parseConfig(`
listen:
  - { port: 8080 }
  - { port: 12100, protocol: tcp, pool: tcp-pool }
  - { port: 12101, protocol: udp, pool: udp-pool }
pools:
  web: { members: [{ url: "http://127.0.0.1:9001" }] }
  tcp-pool:
    balancer: least_connections
    members: [{ url: "tcp://127.0.0.1:12001" }, { url: "tcp://[::1]:12002" }]
    health_check: { interval_ms: 1s }
  udp-pool:
    members: [{ url: "udp://127.0.0.1:12000" }]
    health_check: { payload: hello }
${ROUTES}
`, 'l4.yaml', {})
  t.equal(c.listen[0].protocol, 'http')
  t.same(c.listen[1].tcp, { connect_timeout_ms: 2000, idle_timeout_ms: 600000, max_connections: 10000, connect_attempts: 3, proxy_protocol: 'off' })
  t.same(c.listen[2].udp, { session_idle_ms: 60000, max_sessions: 10000, max_reply_factor: 2 })
  t.equal(c.pools['tcp-pool'].health_check?.type, 'tcp')
  t.equal(c.pools['udp-pool'].health_check?.type, 'udp')
  t.equal(c.pools['udp-pool'].health_check?.payload, 'hello')
  t.equal(c.pools.web.health_check, undefined)
})

t.test('every L4 mistake is reported with its path', async (t) => {
  const p = problems(`
listen:
  - { port: 8080, pool: web }
  - { port: 12100, protocol: tcp }
  - { port: 12101, protocol: udp, pool: tcp-pool }
  - { port: 12102, protocol: tcp, pool: nope }
  - { port: 12103, protocol: tcp, pool: tcp-pool, udp: {}, h2c: true }
  - { port: 12104, protocol: tcp, pool: web }
pools:
  web: { members: [{ url: "http://127.0.0.1:9001" }] }
  tcp-pool:
    members: [{ url: "tcp://127.0.0.1:12001" }, { url: "udp://127.0.0.1:12002" }, { url: "tcp://127.0.0.1" }]
    health_check: { type: http }
    host_header: upstream
  udp-pool:
    balancer: hash
    hash_on: { header: x-user }
    members: [{ url: "udp://127.0.0.1:12000" }]
    health_check: { type: tcp }
  mixed:
    members: [{ url: "http://127.0.0.1:9001" }, { url: "tcp://127.0.0.1:12001" }]
routes:
  - { name: default, match: { path_prefix: / }, pool: udp-pool }
`)
  const all = p.join('\n')
  t.match(all, /listen\.0\.pool: only used by protocol: tcp or udp listeners/)
  t.match(all, /listen\.1\.pool: is required for a tcp listener/)
  t.match(all, /listen\.2\.pool: a udp listener needs a pool of udp:\/\/ members; tcp-pool is a tcp pool/)
  t.match(all, /listen\.3\.pool: unknown pool "nope"/)
  t.match(all, /listen\.4\.udp: only used by protocol: udp listeners/)
  t.match(all, /listen\.4\.h2c: only used by http listeners/)
  t.match(all, /listen\.5\.pool: a tcp listener needs a pool of tcp:\/\/ members; web is an http pool/)
  t.match(all, /pools\.tcp-pool\.members\.1\.url: expected a tcp:\/\/ URL like the pool's first member/)
  t.match(all, /pools\.tcp-pool\.members\.2\.url: expected tcp:\/\/host:port/)
  t.match(all, /pools\.tcp-pool\.health_check\.type: expected tcp for a tcp pool/)
  t.match(all, /pools\.tcp-pool\.host_header: only used by http pools/)
  t.match(all, /pools\.udp-pool\.hash_on: a udp pool hashes on the client address only/)
  t.match(all, /pools\.udp-pool\.health_check\.type: expected udp for a udp pool/)
  t.match(all, /pools\.mixed\.members\.1\.url: expected an http:\/\/ or https:\/\/ URL like the pool's first member/)
  t.match(all, /routes\.0\.pool: routes need an http pool; udp-pool is a udp pool/)
})

t.test('a config needs an http listener beside tcp and udp ones', async (t) => {
  const p = problems(`
listen:
  - { port: 12100, protocol: tcp, pool: t }
pools:
  web: { members: [{ url: "http://127.0.0.1:9001" }] }
  t: { members: [{ url: "tcp://127.0.0.1:12001" }] }
${ROUTES}
`)
  t.match(p.join('\n'), /listen: expected at least one http listener/)
})

t.test('reload plan: an L4 listener\'s pool and settings are live, its port needs a restart', async (t) => {
  const base = (pool: string, port: number, idle: string): string => `
listen:
  - { port: 8080 }
  - { port: ${port}, protocol: tcp, pool: ${pool}, tcp: { idle_timeout_ms: ${idle} } }
pools:
  web: { members: [{ url: "http://127.0.0.1:9001" }] }
  a: { members: [{ url: "tcp://127.0.0.1:12001" }] }
  b: { members: [{ url: "tcp://127.0.0.1:12002" }] }
${ROUTES}
`
  const old = parseConfig(base('a', 12100, '1m'), 'a.yaml', {})
  const next = parseConfig(base('b', 12100, '2m'), 'b.yaml', {})
  const changes = planReload(old, next)
  t.same(changes.filter((c) => c.path.startsWith('listen')).map((c) => [c.path, c.class]), [['listen[1].pool', 'live'], ['listen[1].tcp.idle_timeout_ms', 'live']])
  const effective = carryRestartSettings(old, next)
  t.equal(effective.listen[1].pool, 'b', 'the running config takes the new pool')
  t.equal(effective.listen[1].tcp?.idle_timeout_ms, 120000)
  const moved = parseConfig(base('a', 12200, '1m'), 'c.yaml', {})
  t.same(planReload(old, moved).map((c) => [c.path, c.class]), [['listen[1].port', 'restart']])
  t.equal(carryRestartSettings(old, moved).listen[1].port, 12100, 'the port stays until a restart')
  const slower = parseConfig(base('a', 12100, '1m').replace('a: { members: [{ url: "tcp://127.0.0.1:12001" }] }', 'a: { members: [{ url: "tcp://127.0.0.1:12001" }], max_connections: 7 }'), 'd.yaml', {})
  t.same(planReload(old, slower).map((c) => [c.path, c.class]), [['pools.a.max_connections', 'live']], 'an L4 pool has no connection pool to rebuild')
})

t.test('the shipped upstreams.yaml has the tcp and udp listeners over the lab servers', async (t) => {
  const { readFileSync } = await import('node:fs')
  const c = parseConfig(readFileSync(new URL('../../../upstreams.yaml', import.meta.url), 'utf8'), 'upstreams.yaml', {})
  const tcp = c.listen.find((l) => l.protocol === 'tcp')
  const udp = c.listen.find((l) => l.protocol === 'udp')
  t.match(tcp, { host: '127.0.0.1', port: 12100, pool: 'upper-tcp' })
  t.match(udp, { host: '127.0.0.1', port: 12101, pool: 'upper-udp' })
  t.same(c.pools['upper-tcp'].members.map((m) => m.url), ['tcp://127.0.0.1:12001', 'tcp://127.0.0.1:12002'])
  t.same(c.pools['upper-udp'].members.map((m) => m.url), ['udp://127.0.0.1:12000', 'udp://127.0.0.1:12003'])
  const udpServers = c.sidecars.filter((s) => s.args[0] === 'udp-server').map((s) => s.args[s.args.indexOf('--port') + 1])
  t.same(udpServers, ['12000', '12003'], 'a udp-server sidecar for each member')
})
