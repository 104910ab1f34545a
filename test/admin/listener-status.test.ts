/** The status page's listener rows: http, https with h2, and the L4 listeners with their pool. */
import t from 'tap'
import { parseConfig } from '../../src/config/load.js'
import { listenerStatus } from '../../src/admin/status-snapshot.js'

t.test('L4 listeners show as tcp or udp, with the pool they balance over', async (t) => {
  const c = parseConfig(`
listen:
  - { host: 127.0.0.1, port: 8080 }
  - { host: 127.0.0.1, port: 8443, tls: { self_signed: true } }
  - { name: lab-tcp, host: 127.0.0.1, port: 12100, protocol: tcp, pool: t }
  - { name: lab-udp, host: 127.0.0.1, port: 12101, protocol: udp, pool: u }
pools:
  web: { members: [{ url: "http://127.0.0.1:1" }] }
  t: { members: [{ url: "tcp://127.0.0.1:2" }] }
  u: { members: [{ url: "udp://127.0.0.1:3" }] }
routes: [{ name: r, match: {}, pool: web }]
`, 'l.yaml', {})
  const rows = c.listen.map((l) => listenerStatus(l, undefined))
  t.match(rows[0], { protocol: 'http', tls: false })
  t.match(rows[1], { protocol: 'https', tls: true, http2: 'h2' })
  t.match(rows[2], { name: 'lab-tcp', protocol: 'tcp', pool: 't', tls: false, http2: null })
  t.match(rows[3], { name: 'lab-udp', protocol: 'udp', pool: 'u' })
  t.notOk('pool' in rows[0], 'an http listener names no pool')
})
