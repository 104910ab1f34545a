import { createSocket } from 'node:dgram'
import t from 'tap'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { parseConfig } from '../../src/config/load.js'
import { createL4Metrics } from '../../src/l4/l4-metrics.js'
import { UdpProxy } from '../../src/l4/udp-proxy.js'
import { runCli, udpProbe, type Teardown } from '../fixtures/sockets.js'
import { answered, labUdp, startL4, udpExchange, waitFor } from './l4-setup.js'

function yaml(members: string[], opts: { udp?: string; pool?: string; balancer?: string } = {}): string {
  return `
listen:
  - { host: 127.0.0.1, port: 0 }
  - { name: lab-udp, host: 127.0.0.1, port: 0, protocol: udp, pool: lab${opts.udp === undefined ? '' : `, udp: ${opts.udp}`} }
pools:
  lab:
    balancer: ${opts.balancer ?? 'round_robin'}
    members:
${members.map((m) => `      - { url: "${m}" }`).join('\n')}
${opts.pool ?? ''}
  web: { members: [{ url: "http://127.0.0.1:1" }] }
routes:
  - { name: default, match: { path_prefix: / }, pool: web }
`
}

/** A UDP member that answers every datagram with `reply(msg)`, and counts what it got. */
async function member(t: Teardown, reply: (m: Buffer) => Buffer[]): Promise<{ port: number; got: Buffer[] }> {
  const s = createSocket('udp4')
  const got: Buffer[] = []
  s.on('message', (m, r) => { got.push(m); for (const b of reply(m)) s.send(b, r.port, r.address) })
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => s.close(() => resolve())))
  return { port: s.address().port, got }
}

t.test('a udp listener relays to the lab servers, round robin across both (one session per client address)', async (t) => {
  const a = await labUdp(t)
  const b = await labUdp(t)
  const l4 = await startL4(t, yaml([`udp://127.0.0.1:${a.port}`, `udp://127.0.0.1:${b.port}`]))
  for (let i = 0; i < 4; i++) t.equal(await udpExchange(l4.port(), `hello ${i}`), `HELLO ${i}`)
  t.equal(await answered(a), 2)
  t.equal(await answered(b), 2)
  const m = `127.0.0.1:${a.port}`
  t.equal(await l4.metric('switchyard_l4_sessions_total', { listener: 'lab-udp', pool: 'lab', member: m }), 2)
  t.equal(await l4.metric('switchyard_l4_bytes_total', { listener: 'lab-udp', pool: 'lab', member: m, direction: 'upstream' }), 'hello 0'.length * 2)
  t.equal(await l4.metric('switchyard_l4_bytes_total', { listener: 'lab-udp', pool: 'lab', member: m, direction: 'downstream' }), 'HELLO 0'.length * 2)
  t.equal(await l4.metric('switchyard_l4_sessions_open', { listener: 'lab-udp' }), 4)
})

t.test("the lab's udp-client talks through the proxy", async (t) => {
  const a = await labUdp(t)
  const l4 = await startL4(t, yaml([`udp://127.0.0.1:${a.port}`]))
  const r = await runCli(['udp-client', '--port', String(l4.port())], 'hello\n')
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /HELLO/)
})

t.test('replies go back to the client that asked; a session stays on its member', async (t) => {
  const a = await labUdp(t)
  const b = await labUdp(t)
  const l4 = await startL4(t, yaml([`udp://127.0.0.1:${a.port}`, `udp://127.0.0.1:${b.port}`]))
  const c1 = await udpProbe()
  const c2 = await udpProbe()
  t.teardown(() => Promise.all([c1.close(), c2.close()]))
  for (let i = 0; i < 5; i++) {
    c1.send(`one ${i}`, l4.port())
    c2.send(`two ${i}`, l4.port())
  }
  await c1.nth(5)
  await c2.nth(5)
  t.same(c1.received.map(String).sort(), [0, 1, 2, 3, 4].map((i) => `ONE ${i}`))
  t.same(c2.received.map(String).sort(), [0, 1, 2, 3, 4].map((i) => `TWO ${i}`))
  t.same([await answered(a), await answered(b)].sort(), [5, 5], 'each client address stayed on one member')
  t.equal(await l4.metric('switchyard_l4_sessions_open', { listener: 'lab-udp' }), 2)
})

t.test('sessions expire after session_idle_ms; max_sessions drops datagrams from new addresses', async (t) => {
  const a = await labUdp(t)
  const l4 = await startL4(t, yaml([`udp://127.0.0.1:${a.port}`], { udp: '{ session_idle_ms: 150, max_sessions: 1 }' }))
  const c1 = await udpProbe()
  const c2 = await udpProbe()
  t.teardown(() => Promise.all([c1.close(), c2.close()]))
  c1.send('first', l4.port())
  t.equal(String(await c1.nth(1)), 'FIRST')
  c2.send('second', l4.port())
  await waitFor(async () => (await l4.metric('switchyard_l4_errors_total', { listener: 'lab-udp', pool: 'lab', member: '', reason: 'limit' })) === 1, 3000, 'the drop to be counted')
  t.equal(c2.received.length, 0, 'no session for a second address')
  await waitFor(async () => (await l4.metric('switchyard_l4_sessions_open', { listener: 'lab-udp' })) === 0, 5000, 'the idle session to expire')
  c2.send('again', l4.port())
  t.equal(String(await c2.nth(1)), 'AGAIN', 'room once the first session expired')
})

t.test('no amplification: a client gets at most max_reply_factor times the bytes it sent', async (t) => {
  // A member that answers every datagram with ten copies of it.
  const m = await member(t, (msg) => Array.from({ length: 10 }, () => msg))
  const l4 = await startL4(t, yaml([`udp://127.0.0.1:${m.port}`], { udp: '{ max_reply_factor: 2 }' }))
  const c = await udpProbe()
  t.teardown(() => c.close())
  c.send('0123456789', l4.port())
  await waitFor(async () => (await l4.metric('switchyard_l4_errors_total', { listener: 'lab-udp', pool: 'lab', member: `127.0.0.1:${m.port}`, reason: 'amplification' })) === 8, 3000, 'eight replies dropped')
  // The two replies let through may still be in flight to the client when the drops are counted.
  await waitFor(() => c.received.length >= 2, 3000, 'the two replies let through')
  t.equal(c.received.length, 2, 'two replies of 10 bytes for 10 bytes sent')
  c.send('0123456789', l4.port())
  await waitFor(async () => (await l4.metric('switchyard_l4_errors_total', { listener: 'lab-udp', pool: 'lab', member: `127.0.0.1:${m.port}`, reason: 'amplification' })) === 16, 3000, 'eight more dropped')
  t.equal(c.received.length, 4, 'the allowance grows with what the client sends')
  t.equal(await l4.metric('switchyard_l4_bytes_total', { listener: 'lab-udp', pool: 'lab', member: `127.0.0.1:${m.port}`, direction: 'downstream' }), 40)
})

t.test('a member that refuses (ICMP port unreachable) before answering: the datagrams go to another member', async (t) => {
  const a = await labUdp(t)
  const gone = await labUdp(t)
  const deadPort = gone.port
  await gone.close()
  const l4 = await startL4(t, yaml([`udp://127.0.0.1:${deadPort}`, `udp://127.0.0.1:${a.port}`], { pool: '    outlier: { consecutive_failures: 0 }' }))
  for (let i = 0; i < 4; i++) t.equal(await udpExchange(l4.port(), `retry ${i}`), `RETRY ${i}`, 'every client gets its answer')
  t.ok(await l4.metric('switchyard_l4_errors_total', { listener: 'lab-udp', pool: 'lab', member: `127.0.0.1:${deadPort}`, reason: 'connect_failed' }) >= 1, 'the refusals are counted')
  t.equal(await answered(a), 4)
})

t.test('udp health check: a payload that gets no reply takes the member out; new sessions go to the other', async (t) => {
  const a = await labUdp(t)
  const silent = await member(t, () => [])
  const l4 = await startL4(t, yaml([`udp://127.0.0.1:${silent.port}`, `udp://127.0.0.1:${a.port}`], { pool: '    health_check: { payload: ping, interval_ms: 50, timeout_ms: 100, fall: 1, rise: 1 }' }))
  await waitFor(() => l4.proxy.app.runtime().pools.get('lab')?.members[0].checkUp === false, 5000, 'the silent member to be marked down')
  t.ok(silent.got.some((b) => b.toString() === 'ping'), 'the check sent the configured payload')
  t.equal(l4.proxy.app.runtime().pools.get('lab')?.members[1].checkUp, true, 'the answering member is up')
  for (let i = 0; i < 4; i++) t.equal(await udpExchange(l4.port(), `x${i}`), `X${i}`)
  t.equal(await l4.metric('switchyard_l4_sessions_total', { listener: 'lab-udp', pool: 'lab', member: `127.0.0.1:${a.port}` }), 4, 'every session went to the answering member')
  t.equal(await l4.metric('switchyard_l4_sessions_total', { listener: 'lab-udp', pool: 'lab', member: `127.0.0.1:${silent.port}` }), 0)
})

t.test('a member killed under load: its sessions end, new ones go to the other member', async (t) => {
  const a = await labUdp(t)
  const b = await labUdp(t)
  const l4 = await startL4(t, yaml([`udp://127.0.0.1:${a.port}`, `udp://127.0.0.1:${b.port}`], { pool: '    health_check: { interval_ms: 50, timeout_ms: 200, fall: 1, rise: 1 }' }))
  for (let i = 0; i < 10; i++) await udpExchange(l4.port(), 'warm')
  await a.close()
  await waitFor(() => l4.proxy.app.runtime().pools.get('lab')?.members[0].checkUp === false, 5000, 'the killed member to be marked down')
  const sessions = (port: number): Promise<number> => l4.metric('switchyard_l4_sessions_total', { listener: 'lab-udp', pool: 'lab', member: `127.0.0.1:${port}` })
  const [beforeA, beforeB] = [await sessions(a.port), await sessions(b.port)]
  for (let i = 0; i < 10; i++) t.equal(await udpExchange(l4.port(), `after ${i}`), `AFTER ${i}`)
  t.equal(await sessions(b.port), beforeB + 10, 'every new session went to the live member')
  t.equal(await sessions(a.port), beforeA, 'none to the killed one')
})

t.test('a reload keeps open sessions on their member; new sessions follow the new pool', async (t) => {
  const a = await labUdp(t)
  const b = await labUdp(t)
  const l4 = await startL4(t, yaml([`udp://127.0.0.1:${a.port}`]))
  const c = await udpProbe()
  t.teardown(() => c.close())
  c.send('before', l4.port())
  t.equal(String(await c.nth(1)), 'BEFORE')
  const answer = await l4.proxy.app.reload(parseConfig(yaml([`udp://127.0.0.1:${b.port}`], { udp: '{ max_reply_factor: 3 }' }), 'reload.yaml'))
  t.ok(answer.ok)
  c.send('same session', l4.port())
  t.equal(String(await c.nth(2)), 'SAME SESSION')
  t.equal(await answered(a), 2, 'the open session stayed on the old member')
  t.equal(await udpExchange(l4.port(), 'new'), 'NEW')
  t.equal(await answered(b), 1, 'a new session goes to the new member')
})

t.test('workers mode: one process holds the udp port, another stands by and takes over when it closes', async (t) => {
  const a = await labUdp(t)
  const l4 = await startL4(t, yaml([`udp://127.0.0.1:${a.port}`]))
  const port = l4.port()
  const pool = l4.proxy.app.runtime().pools.get('lab')
  const metrics = createL4Metrics(new Registry())
  const standby = new UdpProxy({ name: 'standby', target: () => (pool === undefined ? undefined : { pool, settings: { session_idle_ms: 1000, max_sessions: 10, max_reply_factor: 2 } }), metrics, log: pino({ level: 'silent' }), exclusive: true, standbyRetryMs: 50 })
  t.teardown(() => standby.close())
  await standby.listen('127.0.0.1', port)
  t.notOk(standby.bound, 'the port is taken: standing by')
  await l4.proxy.app.listeners.l4.close()
  await waitFor(() => standby.bound, 5000, 'the standby to take the port over')
  t.equal(await udpExchange(port, 'taken over'), 'TAKEN OVER')
})

t.test('shutdown: no new sessions while draining; an open session keeps relaying until it goes quiet', async (t) => {
  const a = await labUdp(t)
  const l4 = await startL4(t, `${yaml([`udp://127.0.0.1:${a.port}`])}\nlimits: { shutdown_timeout_ms: 10000 }\n`)
  const c = await udpProbe()
  const late = await udpProbe()
  t.teardown(() => Promise.all([c.close(), late.close()]))
  c.send('open', l4.port())
  t.equal(String(await c.nth(1)), 'OPEN')
  let stopped = false
  const stopping = l4.proxy.app.shutdown('test').then(() => { stopped = true })
  c.send('still here', l4.port())
  t.equal(String(await c.nth(2)), 'STILL HERE', 'the open session still relays')
  late.send('new', l4.port())
  c.send('and again', l4.port())
  t.equal(String(await c.nth(3)), 'AND AGAIN')
  t.equal(late.received.length, 0, 'no session for a new client while draining')
  t.notOk(stopped, 'shutdown waits for the session to go quiet')
  await stopping
  t.equal(late.received.length, 0)
})
