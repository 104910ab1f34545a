import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, loadConfigFile, parseConfig } from '../../src/config/load.js'

const GOOD = `
listen: { port: 8080 }
pools:
  web:
    members: [{ url: http://127.0.0.1:9001 }]
routes:
  - { name: all, match: { path_prefix: / }, pool: web }
`

function problems(yaml: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(yaml, 'bad.yaml', env)
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n').slice(1).map((l) => l.trim())
    throw err
  }
  throw new Error('expected a ConfigError')
}

t.test('a good file gets defaults and is frozen', async (t) => {
  const c = parseConfig(GOOD, 'good.yaml', {})
  t.equal(c.listen[0].host, '0.0.0.0')
  t.equal(c.admin.host, '127.0.0.1', 'admin binds to loopback by default')
  t.equal(c.pools.web.balancer, 'round_robin')
  t.equal(c.pools.web.members[0].weight, 1)
  t.equal(c.pools.web.timeouts.connect_ms, 2000)
  t.ok(Object.isFrozen(c.pools.web.members[0]))
})

t.test('names file, line, column, path and expectation', async (t) => {
  const yaml = `pools:
  a: { members: [{ url: http://127.0.0.1:1 }] }
  b: { members: [{ url: http://127.0.0.1:2 }] }
routes:
  - { name: r0, match: { path_prefix: / }, pool: a }
  - { name: r1, match: { path_prefix: / }, pool: a }
  - name: r2
    split:
      name: exp
      variants:
        - { name: x, pool: a, weight: 1 }
        - { name: y, pool: b, weight: -5 }
`
  const p = problems(yaml)
  t.equal(p.length, 1)
  t.equal(p[0], 'bad.yaml:12:39: routes[2].split.variants[1].weight: expected a number >= 0, got -5')
})

t.test('every problem is reported together', async (t) => {
  const p = problems(`
listen: { port: 99999, hots: x }
pools:
  web:
    balancer: fastest
    members: []
routes:
  - { name: r, match: { path_prefix: api }, pool: web }
`)
  t.match(p.join('\n'), /listen\.port: expected a number <= 65535, got 99999/)
  t.match(p.join('\n'), /listen\.hots: unknown key/)
  t.match(p.join('\n'), /pools\.web\.balancer: expected one of "round_robin", "weighted", "least_request", "least_connections", "random", "hash", got "fastest"/)
  t.match(p.join('\n'), /pools\.web\.members: expected at least 1 item/)
  t.match(p.join('\n'), /routes\[0\]\.match\.path_prefix: expected a string matching \^\//)
  t.ok(p.every((l) => /^bad\.yaml:\d+:\d+: /.test(l)), 'each line carries file:line:col')
})

t.test('references, shapes and uniqueness are checked', async (t) => {
  const p = problems(`
pools:
  web:
    members: [{ url: "ftp://x" }, { url: "http://h:1/path" }]
routes:
  - { name: r, match: {}, pool: nope }
  - { name: r, match: { host: "bad host!" }, pool: web, split: { name: s, variants: [{ name: v, pool: ghost, weight: 1 }] } }
  - { name: q, match: {} }
trusted_proxies: [10.0.0.0/33]
`).join('\n')
  t.match(p, /pools\.web\.members\[0\]\.url: expected an http:\/\/ or https:\/\/ URL/)
  t.match(p, /pools\.web\.members\[1\]\.url: expected scheme, host and port only/)
  t.match(p, /routes\[0\]\.pool: unknown pool "nope" \(known pools: web\)/)
  t.match(p, /routes\[1\]\.name: duplicate route name "r" \(also routes\[0\]\)/)
  t.match(p, /routes\[1\]\.match\.host: expected a host name/)
  t.match(p, /routes\[1\]: expected exactly one of pool or split/)
  t.match(p, /routes\[1\]\.split\.variants\[0\]\.pool: unknown pool "ghost"/)
  t.match(p, /routes\[2\]: expected exactly one of pool or split/)
  t.match(p, /trusted_proxies\[0\]: expected an IP address or CIDR/)
})

t.test('missing required keys and YAML syntax errors', async (t) => {
  t.match(problems('listen: {}\n').join('\n'), /pools: is required[\s\S]*routes: is required/)
  const syntax = problems('pools:\n  web: [unclosed\n')
  t.match(syntax[0], /^bad\.yaml:\d+:\d+: \(top level\): YAML syntax:/)
  t.match(problems('pools: {}\npools: {}\nroutes: []\n')[0], /YAML syntax: .*unique/i)
})

t.test('environment interpolation', async (t) => {
  const yaml = `
listen:
  port: \${PORT:-8081}
  host: "\${HOST}"
pools:
  web:
    members: [{ url: "http://\${UP_HOST:-127.0.0.1}:9001" }]
routes:
  - { name: r, match: { path_prefix: "/$$literal" }, pool: web }
`
  const c = parseConfig(yaml, 'env.yaml', { HOST: '::1' })
  t.equal(c.listen[0].port, 8081, 'a whole plain expression is re-typed as a number')
  t.equal(c.listen[0].host, '::1')
  t.equal(c.pools.web.members[0].url, 'http://127.0.0.1:9001')
  t.equal(c.routes[0].match.path_prefix, '/$literal', '$$ is a literal $')
  const withPort = parseConfig(yaml, 'env.yaml', { HOST: 'h', PORT: '9000' })
  t.equal(withPort.listen[0].port, 9000)
  const p = problems(yaml, {})
  t.equal(p[0], 'bad.yaml:4:9: listen.host: environment variable HOST is not set (use ${HOST:-default} to give a default)')
  // A variable's content cannot change the document's structure.
  const inj = parseConfig(yaml, 'env.yaml', { HOST: 'x\nadmin: { host: 0.0.0.0 }' })
  t.equal(inj.admin.host, '127.0.0.1')
})

t.test('loadConfigFile reports a missing file by name', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-'))
  t.throws(() => loadConfigFile(join(dir, 'nope.yaml')), /nope\.yaml: \(top level\): file not found/)
  writeFileSync(join(dir, 'ok.yaml'), GOOD)
  t.equal(loadConfigFile(join(dir, 'ok.yaml')).routes.length, 1)
})

t.test('cache options of this release: tag fields, key prefix, near cache, coalescing', async (t) => {
  const p = problems(`
pools: { p: { members: [{ url: http://127.0.0.1:1 }] } }
routes:
  - { name: a, match: { path_prefix: / }, pool: p, cache: { enabled: true, tag_headers: ["Bad Header"], strip_tag_headers: maybe } }
cache: { key_prefix: "a{b}:", near_cache: { max_bytes: -1, size: 3 }, coalesce: { lock_ttl_ms: 5, max_wait_ms: -1 } }
`).join('\n')
  t.match(p, /routes\[0\]\.cache\.tag_headers\[0\]: expected a string matching/)
  t.match(p, /routes\[0\]\.cache\.strip_tag_headers: expected/)
  t.match(p, /cache\.key_prefix: expected a string matching \^\[\^\{\}\]\*\$, got "a\{b\}:"/)
  t.match(p, /cache\.near_cache\.max_bytes: expected a number >= 0, got -1/)
  t.match(p, /cache\.near_cache\.size: unknown key/)
  t.match(p, /cache\.coalesce\.lock_ttl_ms: expected a number >= 100, got 5/)
  t.match(p, /cache\.coalesce\.max_wait_ms: expected a number >= 0, got -1/)
})

t.test('compress: zstd alone needs a Node that has it', async (t) => {
  const yaml = 'pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }\nroutes: [{ name: r, match: {}, pool: p, compress: { encodings: [zstd] } }]\n'
  const haveZstd = typeof (await import('node:zlib') as { createZstdCompress?: unknown }).createZstdCompress === 'function'
  if (haveZstd) t.doesNotThrow(() => parseConfig(yaml, 'z.yaml', {}))
  else t.throws(() => parseConfig(yaml, 'z.yaml', {}), /routes\[0\]\.compress\.encodings: zstd needs Node >= 22\.15/)
  t.doesNotThrow(() => parseConfig(yaml.replace('[zstd]', '[zstd, gzip]'), 'z.yaml', {}), 'with a fallback it is fine')
})

t.test('listen: one mapping or a list; listener errors name the listener', async (t) => {
  const rest = 'pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }\nroutes: [{ name: r, match: {}, pool: p }]\n'
  const one = parseConfig(`listen: { port: 8081 }\n${rest}`, 'l.yaml', {})
  t.equal(one.listen.length, 1, 'a mapping is a list of one')
  t.equal(one.listen[0].port, 8081)
  t.equal(one.listen[0].h2c, false)
  const none = parseConfig(rest, 'l.yaml', {})
  t.same(none.listen.map((l) => [l.host, l.port]), [['0.0.0.0', 8080]], 'the default listener')
  const two = parseConfig(`listen:\n  - { port: 80, redirect_https: { port: 443 } }\n  - { port: 443, tls: { self_signed: true, hsts: {} } }\n${rest}`, 'l.yaml', {})
  t.equal(two.listen[0].redirect_https?.status, 308)
  t.same(two.listen[1].tls?.alpn, ['h2', 'http/1.1'])
  t.equal(two.listen[1].tls?.hsts?.max_age_s, 31536000)
  t.throws(() => parseConfig(`listen: { port: x }\n${rest}`, 'l.yaml', {}), /l\.yaml:1:\d+: listen\.port: expected an integer/, 'a single listener is named listen.*')
  const bad = `listen:\n  - { port: 443, tls: {} , h2c: true }\n  - { port: 443, redirect_https: { port: 8443 }, tls: { self_signed: true } }\n${rest}`
  let message = ''
  try { parseConfig(bad, 'l.yaml', {}) } catch (err) { message = (err as Error).message }
  t.match(message, /listen\[0\]\.tls: expected certificates \(cert and key files\) or self_signed: true/)
  t.match(message, /listen\[0\]\.h2c: h2c is for plain listeners/)
  t.match(message, /listen\[1\]\.port: 0\.0\.0\.0:443 is already used by listen\[0\]/)
  t.match(message, /listen\[1\]\.redirect_https: redirect_https is for plain listeners/)
  const rel = parseConfig(`listen: { port: 443, tls: { certificates: [{ cert: c.pem, key: k.pem }] } }\n${rest}`, '/etc/sy/upstreams.yaml', {})
  t.equal(rel.listen[0].tls?.certificates[0].cert, '/etc/sy/c.pem', 'certificate paths are relative to the config file')
})

const POOLS_ROUTES = 'pools:\n  web: { members: [{ url: "http://127.0.0.1:9001" }] }\nroutes:\n  - { name: r, match: {}, pool: web }\n'

t.test('schema and reference problems are reported together, sorted by line', async (t) => {
  const p = problems(`limits:
  headers_timeout_ms: -1
pools:
  web: { members: [{ url: "http://127.0.0.1:1", weight: 0 }] }
routes:
  - { name: a, match: {}, pool: wbe }
  - { name: a, match: { path_prefix: nope }, pool: web }
  - name: s
    split: { name: x, variants: [{ name: v, pool: ghost, weight: -1 }] }
`)
  t.same(p, [
    'bad.yaml:2:23: limits.headers_timeout_ms: expected a number >= 0, got -1',
    'bad.yaml:4:57: pools.web.members[0].weight: expected a number >= 1, got 0',
    'bad.yaml:6:33: routes[0].pool: unknown pool "wbe" (known pools: web)',
    'bad.yaml:7:13: routes[1].name: duplicate route name "a" (also routes[0])',
    'bad.yaml:7:38: routes[1].match.path_prefix: expected a string matching ^/, got "nope"',
    'bad.yaml:9:51: routes[2].split.variants[0].pool: unknown pool "ghost" (known pools: web)',
    'bad.yaml:9:66: routes[2].split.variants[0].weight: expected a number >= 0, got -1'
  ], 'a rejected weight does not also give "weights add up to 0"')
})

t.test('reference checks survive data of the wrong shape', async (t) => {
  const shapes = [
    'pools: [web]\nroutes: [{ name: r, match: {}, pool: web }]\n',
    'pools: { web: 5 }\nroutes: 5\nlisten: x\nsidecars: { a: 1 }\ntrusted_proxies: [1]\n',
    'pools: { web: { members: [5, { url: 7 }], hash_on: [] } }\nroutes: [5, { name: 5, match: 5, split: { variants: 5 } }, { split: { variants: [5, { weight: x }] } }]\n',
    'listen: [5, { tls: 5, port: x }, { tls: { certificates: 5 } }]\npools: {}\nroutes: []\n'
  ]
  for (const yaml of shapes) {
    const p = problems(yaml)
    t.ok(p.length > 0 && p.every((l) => /^bad\.yaml(:\d+:\d+)?: /.test(l)), yaml)
  }
  const noPools = problems('pools: [web]\nroutes: [{ name: r, match: {}, pool: web }]\n')
  t.same(noPools, ['bad.yaml:1:8: pools: expected a mapping, got a list'], 'no "unknown pool" when there is no pools mapping')
})

t.test('a pool name that misses the pattern is reported, its pool validated', async (t) => {
  t.same(problems('pools: { "bad name": { members: 5 } }\nroutes: []\n'), ['bad.yaml:1:10: pools["bad name"]: expected a name of letters, digits, _ . - (at most 63), got "bad name"'])
})

t.test('an empty value is an error, not a silent default', async (t) => {
  const p = problems(`workers:
listen:
  port:
  host: ~
admin: { token: }
logging: { level: null }
limits:
pools:
  web: { members: [{ url: "http://127.0.0.1:1", name: }], health_check: }
routes:
  - { name: r, match: { headers: { x-a: } }, pool: web }
  -
sidecars: [{ name: s, command: x, args: [a, ~], env: { A: } }]
`)
  t.same(p, [
    'bad.yaml:1:1: workers: expected a value; remove the key to use the default 0',
    'bad.yaml:3:3: listen.port: expected a value; remove the key to use the default 8080',
    'bad.yaml:4:3: listen.host: expected a value; remove the key to use the default 0.0.0.0',
    'bad.yaml:5:10: admin.token: expected a value (or remove the key)',
    'bad.yaml:6:12: logging.level: expected a value; remove the key to use the default info',
    'bad.yaml:7:1: limits: expected a value; remove the key to use the defaults',
    'bad.yaml:9:49: pools.web.members[0].name: expected a value (or remove the key)',
    'bad.yaml:9:59: pools.web.health_check: expected a value (or remove the key)',
    'bad.yaml:11:36: routes[0].match.headers.x-a: expected a value',
    'bad.yaml:12:4: routes[1]: expected a value',
    'bad.yaml:13:45: sidecars[0].args[1]: expected a value',
    'bad.yaml:13:56: sidecars[0].env.A: expected a value'
  ])
  t.same(problems('listen:\npools:\nroutes:\n'), [
    'bad.yaml:1:1: listen: expected a value; remove the key to use the default listener (0.0.0.0:8080)',
    'bad.yaml:2:1: pools: expected a value',
    'bad.yaml:3:1: routes: expected a value'
  ], 'required keys have no default to point to')
  t.same(problems(`listen:\n  port: \${PORT}\n${POOLS_ROUTES}`, { PORT: '' }), ['bad.yaml:2:3: listen.port: expected a value (${PORT} is empty); remove the key to use the default 8080'])
  t.same(problems(`listen: [{ port: "\${PORT}" }]\n${POOLS_ROUTES}`, {}), ['bad.yaml:1:18: listen[0].port: environment variable PORT is not set (use ${PORT:-default} to give a default)'], 'an unset variable is reported once')
  t.same(problems(`workers:\nbogus:\n${POOLS_ROUTES}`), [
    'bad.yaml:1:1: workers: expected a value; remove the key to use the default 0',
    'bad.yaml:2:1: bogus: unknown key (check the spelling; see the configuration reference in README.md)'
  ], 'an unknown empty key is an unknown key')
})

t.test('durations: whole milliseconds or a string with a unit, milliseconds in the Config', async (t) => {
  const c = parseConfig(`limits: { headers_timeout_ms: 2s, request_timeout_ms: 1m, shutdown_timeout_ms: "1.5s", keep_alive_timeout_ms: 500ms, client_body_timeout_ms: 1h, max_event_loop_delay_ms: "250" }
pools:
  web:
    members: [{ url: "http://127.0.0.1:9001" }]
    timeouts: { connect_ms: 1.1s, request_ms: 0.5s }
    health_check: { interval_ms: 2s, timeout_ms: 100ms }
    outlier: { base_ejection_ms: 30s, max_ejection_ms: 5m }
    retry_budget: { window_ms: 10s }
    queue: { timeout_ms: 250ms }
routes:
  - { name: r, match: {}, pool: web, timeout_ms: 3s, retries: { per_try_timeout_ms: 1s }, websocket: { idle_timeout_ms: 1m } }
cache: { redis: { timeout_ms: 50ms }, coalesce: { lock_ttl_ms: 10s, max_wait_ms: 0s } }
sidecars: [{ name: s, command: x, restart: { initial_delay_ms: 250ms, max_delay_ms: 30s }, stop_timeout_ms: 5s }]
listen: { tls: { self_signed: true, watch_interval_ms: 0ms } }
`, 'd.yaml', {})
  t.same([c.limits.headers_timeout_ms, c.limits.request_timeout_ms, c.limits.shutdown_timeout_ms, c.limits.keep_alive_timeout_ms, c.limits.client_body_timeout_ms, c.limits.max_event_loop_delay_ms], [2000, 60000, 1500, 500, 3600000, 250])
  const p = c.pools.web
  t.same([p.timeouts.connect_ms, p.timeouts.request_ms, p.health_check?.interval_ms, p.health_check?.timeout_ms, p.outlier.base_ejection_ms, p.outlier.max_ejection_ms, p.retry_budget.window_ms, p.queue.timeout_ms], [1100, 500, 2000, 100, 30000, 300000, 10000, 250])
  t.same([c.routes[0].timeout_ms, c.routes[0].retries.per_try_timeout_ms, c.routes[0].websocket.idle_timeout_ms], [3000, 1000, 60000])
  t.same([c.cache.redis.timeout_ms, c.cache.coalesce.lock_ttl_ms, c.cache.coalesce.max_wait_ms], [50, 10000, 0])
  t.same([c.sidecars[0].restart.initial_delay_ms, c.sidecars[0].restart.max_delay_ms, c.sidecars[0].stop_timeout_ms, c.listen[0].tls?.watch_interval_ms], [250, 30000, 5000, 0])
  t.equal(c.limits.http2.reset_window_ms, 10000, 'defaults stay integers')

  t.same(problems(`limits: { headers_timeout_ms: ten, request_timeout_ms: 2.5ms, shutdown_timeout_ms: 1.5, keep_alive_timeout_ms: 1000000h, client_body_timeout_ms: -2s }
${POOLS_ROUTES}`), [
    'bad.yaml:1:31: limits.headers_timeout_ms: expected milliseconds or a duration such as "10s", got "ten"',
    'bad.yaml:1:56: limits.request_timeout_ms: expected whole milliseconds, got "2.5ms"',
    'bad.yaml:1:84: limits.shutdown_timeout_ms: expected whole milliseconds or a duration such as "1.5s", got 1.5',
    'bad.yaml:1:112: limits.keep_alive_timeout_ms: expected at most 2147483647 ms (about 24.8 days), got "1000000h"',
    'bad.yaml:1:146: limits.client_body_timeout_ms: expected milliseconds or a duration such as "10s", got "-2s"'
  ])
  t.same(problems(`cache: { coalesce: { lock_ttl_ms: 50ms } }\n${POOLS_ROUTES}`), ['bad.yaml:1:35: cache.coalesce.lock_ttl_ms: expected at least 100 ms, got "50ms" (50 ms)'], 'a key\'s minimum holds for strings too')
  t.same(problems(`limits: { headers_timeout_ms: 2 s }\n${POOLS_ROUTES}`), ['bad.yaml:1:31: limits.headers_timeout_ms: expected milliseconds or a duration such as "10s", got "2 s"'])
})
