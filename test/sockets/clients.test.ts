import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import t from 'tap'
import { waitFor } from '../fixtures/proxy.js'
import { deadPort } from '../fixtures/upstream.js'
import { CLI, runCli, tcpProbe, udpProbe, type Teardown } from '../fixtures/sockets.js'
import { PROMPT } from '../../src/sockets/client-io.js'
import { metricValue } from '../../src/sockets/socket-metrics.js'
import { startTcpServer } from '../../src/sockets/tcp-server.js'
import { startUdpServer } from '../../src/sockets/udp-server.js'

async function udpServer(t: Teardown) {
  const s = await startUdpServer({ port: 0, host: '127.0.0.1' })
  t.teardown(() => s.close())
  return s
}
async function tcpServer(t: Teardown) {
  const s = await startTcpServer({ port: 0, host: '127.0.0.1' })
  t.teardown(() => s.close())
  return s
}

t.test('udp-client: a message as arguments, as the lab prints it', async (t) => {
  const s = await udpServer(t)
  const r = await runCli(['udp-client', '--port', String(s.port), 'hello', 'straße'])
  t.equal(r.stdout, 'From Server: HELLO STRASSE\n')
  t.equal(r.stderr, '')
  t.equal(r.code, 0)
})

t.test('udp-client: piped lines, one answer each; --raw prints only the answer', async (t) => {
  const s = await udpServer(t)
  const r = await runCli(['udp-client', '--port', String(s.port)], 'first line\nsecond\r\n\nlast without newline')
  t.equal(r.stdout, 'From Server: FIRST LINE\nFrom Server: SECOND\nFrom Server: \nFrom Server: LAST WITHOUT NEWLINE\n')
  t.equal(r.code, 0)
  const raw = await runCli(['udp-client', '--port', String(s.port), '--raw'], 'a\nb\n')
  t.equal(raw.stdout, 'A\nB\n')
})

t.test('udp-client: no answer -> a clear message and exit code 1', async (t) => {
  const silent = await udpProbe() // bound, so no ICMP "port unreachable": it just never answers
  t.teardown(() => silent.close())
  const r = await runCli(['udp-client', '--port', String(silent.port), '--timeout-ms', '100', '--retries', '1', 'anyone?'])
  t.equal(r.code, 1)
  t.equal(r.stdout, '')
  t.match(r.stderr, `no answer from 127.0.0.1:${silent.port} after 2 attempts`)
  t.equal(silent.received.length, 2, 'it tried twice')
})

t.test('udp-client: a closed port is reported as unreachable, exit code 1', async (t) => {
  const probe = await udpProbe()
  const port = probe.port
  await probe.close()
  const r = await runCli(['udp-client', '--port', String(port), '--timeout-ms', '500', '--retries', '0', 'x'])
  t.equal(r.code, 1)
  t.match(r.stderr, `no answer from 127.0.0.1:${port} after 1 attempt`)
})

t.test('tcp-client: arguments, and piped lines over one connection', async (t) => {
  const s = await tcpServer(t)
  const one = await runCli(['tcp-client', '--port', String(s.port), 'hello', 'world'])
  t.equal(one.stdout, 'From Server: HELLO WORLD\n')
  t.equal(one.code, 0)
  const piped = await runCli(['tcp-client', '--port', String(s.port)], 'one\ntwo\r\nthree')
  t.equal(piped.stdout, 'From Server: ONE\nFrom Server: TWO\nFrom Server: THREE\n')
  t.equal(piped.code, 0)
  t.equal(await metricValue(s.registry, 'switchyard_socket_connections_total', { server: 'tcp', outcome: 'accepted' }), 2, 'one connection per run')
  const raw = await runCli(['tcp-client', '--port', String(s.port), '--raw'], 'x\ny\n')
  t.equal(raw.stdout, 'X\nY\n')
})

t.test('tcp-client: refused -> a clear message and exit code 1', async (t) => {
  const port = await deadPort()
  const r = await runCli(['tcp-client', '--port', String(port), 'hello'])
  t.equal(r.code, 1)
  t.equal(r.stderr, `switchyard tcp-client: connection refused by 127.0.0.1:${port}\n`)
})

t.test('tcp-client: a server at its connection limit -> its reason, exit code 1 (not printed as an answer)', async (t) => {
  const s = await startTcpServer({ port: 0, host: '127.0.0.1', maxConnections: 1 })
  t.teardown(() => s.close())
  const holder = await tcpProbe(s.port)
  t.teardown(() => holder.socket.destroy())
  await waitFor(() => s.connections === 1, 5000, 'the only slot to be taken')
  const r = await runCli(['tcp-client', '--port', String(s.port), 'hello'])
  t.equal(r.code, 1)
  t.equal(r.stdout, '')
  t.equal(r.stderr, `switchyard tcp-client: TCP target 127.0.0.1:${s.port} refused the connection: ERROR too many connections (limit 1)\n`)
})

t.test('tcp-client: a server that never answers -> timeout, exit code 1', async (t) => {
  const sockets = new Set<Socket>()
  const mute = createServer((s) => { sockets.add(s); s.on('error', () => {}) })
  await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); mute.close(() => resolve()) }))
  const port = (mute.address() as { port: number }).port
  const r = await runCli(['tcp-client', '--port', String(port), '--timeout-ms', '200', 'hello'])
  t.equal(r.code, 1)
  t.equal(r.stderr, `switchyard tcp-client: no answer from 127.0.0.1:${port} within 200 ms\n`)
})

t.test('tcp-client: a server that resets the connection -> exit code 1', async (t) => {
  const rude = createServer((s) => { s.on('error', () => {}); s.once('data', () => s.resetAndDestroy()) })
  await new Promise<void>((resolve) => rude.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => rude.close(() => resolve())))
  const port = (rude.address() as { port: number }).port
  const r = await runCli(['tcp-client', '--port', String(port), 'hello'])
  t.equal(r.code, 1)
  t.equal(r.stderr, `switchyard tcp-client: connection reset by 127.0.0.1:${port}\n`)
})

t.test('bad flags are usage errors: exit code 2', async (t) => {
  const r = await runCli(['udp-client', '--port', 'twelve', 'x'])
  t.equal(r.code, 2)
  t.match(r.stderr, '--port: expected a whole number')
  const s = await runCli(['tcp-server', '--mode', 'shout'])
  t.equal(s.code, 2)
  t.match(s.stderr, '--mode: expected one of upper, echo')
  const a = await runCli(['tcp-adapter'])
  t.equal(a.code, 2)
  t.match(a.stderr, '--target is required')
})

t.test('interactive (a terminal): the lab prompt, one answer per line, Ctrl-D ends', { skip: existsSync('/usr/bin/script') && process.platform === 'linux' ? false : 'needs util-linux script(1) for a pseudo-terminal' }, async (t) => {
  for (const kind of ['udp', 'tcp'] as const) {
    const port = kind === 'udp' ? (await udpServer(t)).port : (await tcpServer(t)).port
    // script(1) runs the client on a pseudo-terminal, so stdin.isTTY is true as for a person.
    const child = spawn('/usr/bin/script', ['-qfec', `'${process.execPath}' '${CLI}' ${kind}-client --port ${port}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] })
    t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s })
    const exited = once(child, 'exit')
    const seen = (text: string, n = 1) => waitFor(() => out.split(text).length > n, 10000, JSON.stringify(text))
    await seen(PROMPT)
    child.stdin.write('hello terminal\r')
    await seen('From Server: HELLO TERMINAL')
    await seen(PROMPT, 2)
    child.stdin.write('\x04') // Ctrl-D: end of input
    const [code] = await exited
    t.equal(code, 0, `${kind}-client exits 0 at end of input`)
  }
})
