/** The forward section's config checks, the scrypt hashes and `switchyard hash-password`. */
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, parseConfig } from '../../src/config/load.js'
import { planReload } from '../../src/control/reload-plan.js'
import { hashPassword, parseHash, verifyPassword } from '../../src/security/password-hash.js'
import { runCli } from '../fixtures/cli.js'

const REST = `
pools: { web: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: [{ name: all, match: {}, pool: web }]
`

function problems(yaml: string, file = 'fw.yaml'): string[] {
  try {
    parseConfig(yaml + REST, file, {})
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.issues.map((i) => `${i.path.map(String).join('.')}: ${i.message}`)
  }
}

t.test('defaults: reverse listeners, a deny-everything forward section, CONNECT to 443 only', async (t) => {
  const c = parseConfig(`listen: [{ port: 8080 }, { port: 3128, mode: forward }]${REST}`, 'fw.yaml', {})
  t.equal(c.listen[0].mode, 'reverse')
  t.equal(c.listen[1].mode, 'forward')
  t.same(c.forward.allow, [])
  t.same(c.forward.clients, [])
  t.same(c.forward.connect_ports, [443])
  t.equal(c.forward.anonymous, false)
  t.same(c.forward.strip_headers.slice(0, 3), ['From', 'Referer', 'User-Agent'])
})

t.test('problems are reported with their path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-fw-config-'))
  t.same(problems(`
listen:
  - { port: 3128, mode: forward, tls: { self_signed: true } }
  - { port: 3129, mode: forward, h2c: true }
  - { port: 12100, protocol: tcp, pool: web, mode: forward }
forward:
  clients: [10.0.0.0/33]
  allow: [{ host: a.test, cidr: 10.0.0.0/8 }, { cidr: nope }]
  users:
    - { name: a, password_hash: "scrypt$1$2" }
    - { name: a, password_hash: "scrypt$1024$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==" }
  filters: { paths: ["(unclosed"], blocklists: [missing.txt] }
`, join(dir, 'fw.yaml')).filter((p) => !p.startsWith('listen.2.pool')).sort(), [
    'forward.allow.0: give host or cidr, not both (a name is judged before it is resolved, an address range after)',
    'forward.allow.1.cidr: expected an IP address or CIDR such as 10.0.0.0/8, got "nope"',
    `forward.clients.0: expected an IP address or CIDR such as 10.0.0.0/8, got "10.0.0.0/33"`,
    `forward.filters.blocklists.0: cannot read block list file ${join(dir, 'missing.txt')}`,
    'forward.filters.paths.0: expected a regular expression: Invalid regular expression: /(unclosed/: Unterminated group',
    'forward.users.0.password_hash: expected scrypt$N$r$p$salt$hash (base64 salt and hash), as `switchyard hash-password` prints',
    'forward.users.1.name: duplicate user "a"',
    'listen.1.h2c: not used by a forward listener (CONNECT tunnels are HTTP/1.1)',
    'listen.0.tls: not used by a forward listener (clients speak plain HTTP/1.1 to it; https:// goes through CONNECT)',
    'listen.2.mode: mode: forward is for http listeners (this one is tcp)'
  ].sort())
})

t.test('a reload reports forward changes as live, user hashes not shown', async (t) => {
  const a = parseConfig(`listen: [{ port: 3128, mode: forward }]\nforward: { allow: [{ host: a.test }] }${REST}`, 'fw.yaml', {})
  const b = parseConfig(`listen: [{ port: 3128, mode: forward }]\nforward: { allow: [{ host: b.test }], users: [{ name: u, password_hash: "scrypt$1024$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==" }] }${REST}`, 'fw.yaml', {})
  const plan = planReload(a, b)
  t.match(plan.find((c) => c.path === 'forward.allow'), { class: 'live' })
  t.match(plan.find((c) => c.path === 'forward.users'), { class: 'live', detail: 'changed (value not shown)' })
})

t.test('scrypt hashes: the format, a match, a mismatch', async (t) => {
  const h = await hashPassword('s3cret', { N: 1024, r: 8, p: 1 })
  t.match(h, /^scrypt\$1024\$8\$1\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/)
  const parsed = parseHash(h)
  if (parsed === undefined) throw new Error('unparsed')
  t.equal(parsed.hash.length, 32)
  t.ok(await verifyPassword('s3cret', parsed))
  t.notOk(await verifyPassword('s3cret ', parsed))
  t.not(await hashPassword('s3cret', { N: 1024, r: 8, p: 1 }), h, 'a fresh salt every time')
  t.equal(parseHash('scrypt$1000$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA=='), undefined, 'N must be a power of two')
})

t.test('switchyard hash-password reads stdin and prints a hash that verifies', async (t) => {
  const r = await runCli(['hash-password', '--cost', '1024'], { stdin: 'open sesame\n' })
  t.equal(r.code, 0, r.stderr)
  const line = r.stdout.trim()
  const parsed = parseHash(line)
  t.ok(parsed !== undefined && await verifyPassword('open sesame', parsed), 'the line end is not part of the password')
  const empty = await runCli(['hash-password'], { stdin: '' })
  t.equal(empty.code, 2)
  t.match(empty.stderr, /expected a password on standard input/)
  // The printed hash is accepted by the config as it is.
  const dir = mkdtempSync(join(tmpdir(), 'sy-fw-hash-'))
  writeFileSync(join(dir, 'u.yaml'), '')
  t.same(problems(`listen: [{ port: 3128, mode: forward }]\nforward: { users: [{ name: u, password_hash: "${line}" }] }`), [])
})
