import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import t from 'tap'
import { CLI, runCli, udpProbe, type Teardown } from '../fixtures/sockets.js'
import { fetchText } from '../fixtures/proxy.js'
import { METRICS_REQUEST, type MetricsMessage } from '../../src/sidecars/child-metrics.js'

interface Running {
  child: ChildProcess
  /** The first log line, parsed (servers log where they listen). */
  listening: { port: number; msg: string; name: string }
  exited: Promise<number | null>
}

/** Starts a server command as a program (optionally with an IPC channel, like a sidecar) and waits for its "listening" log line. */
async function startProgram(t: Teardown, args: string[], ipc = false): Promise<Running> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'inherit', ...(ipc ? ['ipc' as const] : [])], env: { ...process.env, SWITCHYARD_SIDECAR_NAME: 'lab' } })
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  const lines = createInterface({ input: child.stdout! })
  const [first] = (await once(lines, 'line')) as [string]
  return { child, listening: JSON.parse(first) as Running['listening'], exited }
}

t.test('tcp-server and tcp-adapter as programs: JSON logs on stdout, exit 0 on SIGTERM', async (t) => {
  const server = await startProgram(t, ['tcp-server', '--port', '0', '--host', '127.0.0.1'])
  t.equal(server.listening.msg, 'tcp server listening')
  t.equal(server.listening.name, 'tcp-server')
  const adapter = await startProgram(t, ['tcp-adapter', '--port', '0', '--target', `127.0.0.1:${server.listening.port}`])
  const r = await fetchText(`http://127.0.0.1:${adapter.listening.port}/upper?text=through+the+adapter`)
  t.equal(r.body, 'THROUGH THE ADAPTER\n')
  const c = await runCli(['tcp-client', '--port', String(server.listening.port), 'hi'])
  t.equal(c.stdout, 'From Server: HI\n')
  adapter.child.kill('SIGTERM')
  server.child.kill('SIGTERM')
  t.equal(await adapter.exited, 0)
  t.equal(await server.exited, 0)
})

t.test('udp-server as a sidecar: metrics over IPC, and it exits when the parent goes away', async (t) => {
  const server = await startProgram(t, ['udp-server', '--port', '0', '--host', '127.0.0.1'], true)
  t.equal(server.listening.msg, 'udp server listening')
  const probe = await udpProbe()
  t.teardown(() => probe.close())
  probe.send('counted', server.listening.port)
  t.equal(String(await probe.nth(1)), 'COUNTED')
  const reply = new Promise<MetricsMessage>((resolve) => server.child.on('message', (m: MetricsMessage) => { if (m.id === 7) resolve(m) }))
  server.child.send({ type: METRICS_REQUEST, id: 7 })
  const metrics = (await reply).metrics as { name: string; values: { value: number; labels: Record<string, string> }[] }[]
  const messages = metrics.find((m) => m.name === 'switchyard_socket_messages_total')
  const answered = messages?.values.find((v) => v.labels.outcome === 'answered')
  t.equal(answered?.value, 1)
  t.equal(answered?.labels.sidecar, 'lab', 'labelled with the sidecar name')
  server.child.disconnect() // the supervisor went away
  t.equal(await server.exited, 0)
})

t.test('udp-server --rcvbuf: the size in effect is in the listening line; tcp-server takes its new flags', async (t) => {
  const udp = await startProgram(t, ['udp-server', '--port', '0', '--host', '127.0.0.1', '--rcvbuf', '65536'])
  const listening = udp.listening as Running['listening'] & { recvBufferSize: number; recvBufferRequested: number }
  t.equal(listening.recvBufferRequested, 65536)
  t.ok(listening.recvBufferSize >= 65536, `SO_RCVBUF is ${listening.recvBufferSize}`)
  const tcp = await startProgram(t, ['tcp-server', '--port', '0', '--host', '127.0.0.1', '--max-per-address', '3', '--linger-ms', '500'])
  t.match(tcp.listening, { maxPerAddress: 3, lingerMs: 500 })
  const bad = await runCli(['udp-server', '--rcvbuf', '0'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /--rcvbuf: expected a whole number from 1/)
  const badCap = await runCli(['tcp-server', '--max-per-address', '-1'])
  t.equal(badCap.code, 2)
})
