/**
 * The "done when", as a user runs it: `switchyard start` with tcp and udp listeners over
 * lab servers started as sidecars; the lab's own clients talk through the proxy and every
 * server gets traffic. Once as one process, once with two workers (tcp shared, udp held by one).
 */
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli, spawnCli } from '../fixtures/cli.js'
import { deadPort } from '../fixtures/upstream.js'
import { fetchText, waitFor } from '../fixtures/proxy.js'
import { tcpExchange, udpExchange } from './l4-setup.js'

const dir = mkdtempSync(join(tmpdir(), 'sy-l4-start-'))

for (const workers of [1, 2]) {
  t.test(`start with workers: ${workers}: tcp-client and udp-client get HELLO through the proxy from both servers`, async (t) => {
    const [http, admin, tcp, udp, t1, t2, u1, u2] = await Promise.all(Array.from({ length: 8 }, () => deadPort()))
    const cfg = join(dir, `start-${workers}.yaml`)
    writeFileSync(cfg, `
workers: ${workers}
listen:
  - { host: 127.0.0.1, port: ${http} }
  - { name: lab-tcp, host: 127.0.0.1, port: ${tcp}, protocol: tcp, pool: upper-tcp }
  - { name: lab-udp, host: 127.0.0.1, port: ${udp}, protocol: udp, pool: upper-udp }
admin: { port: ${admin} }
limits: { shutdown_timeout_ms: 2000 }
pools:
  web: { members: [{ url: "http://127.0.0.1:1" }] }
  upper-tcp:
    members: [{ url: "tcp://127.0.0.1:${t1}" }, { url: "tcp://127.0.0.1:${t2}" }]
    health_check: { interval_ms: 200, timeout_ms: 200 }
  upper-udp:
    members: [{ url: "udp://127.0.0.1:${u1}" }, { url: "udp://127.0.0.1:${u2}" }]
    health_check: { interval_ms: 200, timeout_ms: 200 }
routes:
  - { name: default, match: { path_prefix: / }, pool: web }
sidecars:
  - { name: tcp-1, command: switchyard, args: [tcp-server, --host, 127.0.0.1, --port, "${t1}"] }
  - { name: tcp-2, command: switchyard, args: [tcp-server, --host, 127.0.0.1, --port, "${t2}"] }
  - { name: udp-1, command: switchyard, args: [udp-server, --host, 127.0.0.1, --port, "${u1}"] }
  - { name: udp-2, command: switchyard, args: [udp-server, --host, 127.0.0.1, --port, "${u2}"] }
`)
    const proc = spawnCli(['start', '--config', cfg], { LOG_LEVEL: 'warn' })
    t.teardown(() => { proc.child.kill('SIGKILL') })
    const readyz = `http://127.0.0.1:${admin}/readyz`
    await waitFor(async () => (await fetchText(readyz).catch(() => ({ status: 0 }))).status === 200, 20000, 'the proxy to be ready')
    // Ready means spawned, not yet listening: wait for the lab servers themselves.
    for (const p of [t1, t2]) await waitFor(() => tcpExchange(p, 'up').then((r) => r === 'UP\n', () => false), 10000, `tcp server ${p}`)
    for (const p of [u1, u2]) await waitFor(() => udpExchange(p, 'up', 500).then((r) => r === 'UP', () => false), 10000, `udp server ${p}`)
    for (let i = 0; i < 4; i++) {
      const viaTcp = await runCli(['tcp-client', '--port', String(tcp)], { stdin: `hello ${i}\n` })
      t.match(viaTcp.stdout, `HELLO ${i}`, `tcp #${i}: ${viaTcp.stderr}`)
      const viaUdp = await runCli(['udp-client', '--port', String(udp)], { stdin: `hello ${i}\n` })
      t.match(viaUdp.stdout, `HELLO ${i}`, `udp #${i}: ${viaUdp.stderr}`)
    }
    const metrics = (await fetchText(`http://127.0.0.1:${admin}/metrics`)).body
    for (const p of [t1, t2]) t.match(metrics, new RegExp(`switchyard_l4_connections_total\\{listener="lab-tcp",pool="upper-tcp",member="127.0.0.1:${p}"\\} [1-9]`), `tcp server ${p} got traffic`)
    for (const p of [u1, u2]) t.match(metrics, new RegExp(`switchyard_l4_sessions_total\\{listener="lab-udp",pool="upper-udp",member="127.0.0.1:${p}"\\} [1-9]`), `udp server ${p} got traffic`)
    proc.child.kill('SIGTERM')
    const exit = await proc.exited
    t.equal(exit.code, 0, 'a graceful stop')
  })
}
