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
  t.match(p.join('\n'), /pools\.web\.balancer: expected one of "round_robin", "weighted", "least_request", "random", "hash", got "fastest"/)
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
