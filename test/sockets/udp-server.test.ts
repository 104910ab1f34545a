import { readFileSync } from 'node:fs'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import t from 'tap'
import { waitFor } from '../fixtures/proxy.js'
import { udpProbe, type Teardown } from '../fixtures/sockets.js'
import { metricValue } from '../../src/sockets/socket-metrics.js'
import { REPLY_TOO_LARGE, UDP_MAX_PAYLOAD, startUdpServer, type UdpServerOptions } from '../../src/sockets/udp-server.js'

async function setup(t: Teardown, opts: UdpServerOptions = {}) {
  const server = await startUdpServer({ port: 0, host: '127.0.0.1', ...opts })
  const client = await udpProbe()
  t.teardown(async () => { await client.close(); await server.close() })
  return { server, client }
}
type Setup = Awaited<ReturnType<typeof setup>>
const messages = (s: Setup, outcome: string) => metricValue(s.server.registry, 'switchyard_socket_messages_total', { server: 'udp', outcome })

t.test("the lab's exchange: a sentence comes back upper-cased", async (t) => {
  const s = await setup(t)
  s.client.send('hello from the lab', s.server.port)
  t.equal(String(await s.client.nth(1)), 'HELLO FROM THE LAB')
  t.equal(await messages(s, 'answered'), 1)
  t.equal(await metricValue(s.server.registry, 'switchyard_socket_bytes_total', { server: 'udp', direction: 'in' }), 18)
  await waitFor(async () => await metricValue(s.server.registry, 'switchyard_socket_bytes_total', { server: 'udp', direction: 'out' }) === 18)
})

t.test('Unicode upper-casing, echo mode and invalid UTF-8', async (t) => {
  const s = await setup(t)
  s.client.send('straße', s.server.port)
  t.equal(String(await s.client.nth(1)), 'STRASSE')
  s.client.send(Buffer.from([0x68, 0xff, 0x69]), s.server.port)
  t.same(await s.client.nth(2), Buffer.from('H\uFFFDI'), 'the invalid byte became U+FFFD')
  const echo = await setup(t, { mode: 'echo' })
  echo.client.send('Straße', echo.server.port)
  t.equal(String(await echo.client.nth(1)), 'Straße')
})

t.test('an empty datagram gets an empty datagram back', async (t) => {
  const s = await setup(t)
  s.client.send(Buffer.alloc(0), s.server.port)
  t.equal((await s.client.nth(1)).length, 0)
})

t.test('a datagram of the UDP maximum (65,507 bytes) is answered in full', async (t) => {
  const s = await setup(t)
  s.client.send(Buffer.alloc(UDP_MAX_PAYLOAD, 'a'), s.server.port)
  const answer = await s.client.nth(1)
  t.equal(answer.length, UDP_MAX_PAYLOAD)
  t.ok(answer.equals(Buffer.alloc(UDP_MAX_PAYLOAD, 'A')))
})

t.test('reply-size caps: the amplification factor and the UDP maximum', async (t) => {
  const s = await setup(t)
  s.client.send('ß'.repeat(1000), s.server.port)
  t.equal(String(await s.client.nth(1)), 'SS'.repeat(1000), 'ß -> SS: same byte count, within 2x')
  s.client.send('ΐ'.repeat(10), s.server.port) // 20 bytes in, 60 out: over 2x
  t.same(await s.client.nth(2), REPLY_TOO_LARGE)
  s.client.send('ΐ', s.server.port) // 2 bytes in: even the error (21 bytes) would amplify, so no answer
  s.client.send('next', s.server.port)
  t.equal(String(await s.client.nth(3)), 'NEXT', 'the tiny request was dropped (datagrams on loopback arrive in order)')
  t.equal(await messages(s, 'reply_too_large'), 2)

  const wide = await setup(t, { maxReplyFactor: 4 })
  wide.client.send('ΐ'.repeat(15000), wide.server.port) // 30,000 bytes in, 90,000 out: within 4x, over 65,507
  t.same(await wide.client.nth(1), REPLY_TOO_LARGE)
})

t.test('per-source rate limit: the burst is answered, the excess dropped and counted', async (t) => {
  let now = 0
  const s = await setup(t, { rateLimit: { burst: 5, ratePerSecond: 10 }, now: () => now })
  for (let i = 0; i < 20; i++) s.client.send(`m${i}`, s.server.port)
  await waitFor(async () => (await messages(s, 'answered')) + (await messages(s, 'rate_limited')) === 20, 5000, 'all 20 datagrams handled')
  t.equal(await messages(s, 'answered'), 5)
  t.equal(await messages(s, 'rate_limited'), 15)
  await s.client.nth(5)
  t.same(s.client.received.map(String), ['M0', 'M1', 'M2', 'M3', 'M4'])
  now = 200 // 0.2 s at 10/s: two tokens
  for (let i = 0; i < 3; i++) s.client.send(`later${i}`, s.server.port)
  await waitFor(async () => (await messages(s, 'rate_limited')) === 16)
  t.same((await s.client.nth(7)).toString(), 'LATER1')
  t.equal(s.client.received.length, 7)
  const other = await udpProbe('127.0.0.2')
  t.teardown(() => other.close())
  other.send('another source', s.server.port)
  t.equal(String(await other.nth(1)), 'ANOTHER SOURCE', 'buckets are per source address')
})

t.test("listens on '::' (udp6, dual-stack) and answers an IPv4 client", async (t) => {
  const s = await setup(t, { host: '::' })
  t.equal(s.server.address, '::')
  s.client.send('dual', s.server.port)
  t.equal(String(await s.client.nth(1)), 'DUAL')
})

/** A pino logger whose lines are kept, parsed, for the test to look at. */
function capturedLogger() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = []
  const stream = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(JSON.parse(String(chunk))); done() } })
  return { logger: pino({ level: 'info' }, stream), lines }
}

function rmemMax(): number | undefined {
  try { return Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8')) } catch { return undefined }
}

t.test('recvBufferSize (--rcvbuf) sets SO_RCVBUF and logs the size in effect', async (t) => {
  const { logger, lines } = capturedLogger()
  const requested = 65536 // under any Linux rmem_max (the default is 212992), so never capped
  const s = await setup(t, { recvBufferSize: requested, logger })
  t.ok(s.server.recvBufferSize >= requested, `the kernel reports ${s.server.recvBufferSize} bytes (Linux reports twice what it keeps)`)
  await waitFor(() => lines.some((l) => l.msg === 'udp server listening'), 2000, 'the listening log line')
  const listening = lines.find((l) => l.msg === 'udp server listening')
  t.equal(listening?.recvBufferSize, s.server.recvBufferSize)
  t.equal(listening?.recvBufferRequested, requested)
  t.notOk(lines.some((l) => l.level === 40), 'no warning')
  s.client.send('still answers', s.server.port)
  t.equal(String(await s.client.nth(1)), 'STILL ANSWERS')

  const { logger: l2, lines: defaultLines } = capturedLogger()
  const d = await setup(t, { logger: l2 })
  await waitFor(() => defaultLines.length > 0, 2000, 'the listening log line')
  t.equal(defaultLines[0].recvBufferRequested, 'system default')
  t.ok(d.server.recvBufferSize > 0, `without the option the system's size is reported (${d.server.recvBufferSize})`)
})

const ceiling = rmemMax()
t.test('a receive buffer over net.core.rmem_max is capped by the kernel, with a warning saying how to raise it', {
  skip: ceiling === undefined || ceiling > 2 ** 29 ? 'needs Linux with a net.core.rmem_max under 512 MiB' : false
}, async (t) => {
  if (ceiling === undefined) return
  const { logger, lines } = capturedLogger()
  const requested = ceiling * 2 + 4096
  const s = await setup(t, { recvBufferSize: requested, logger })
  t.ok(s.server.recvBufferSize < requested, `capped: ${s.server.recvBufferSize} < ${requested}`)
  await waitFor(() => lines.some((l) => l.level === 40), 2000, 'the warning')
  const warn = lines.find((l) => l.level === 40)
  t.match(warn?.msg, `net.core.rmem_max is ${ceiling}; raise it with sysctl -w net.core.rmem_max=${requested}`)
  t.equal(warn?.effective, s.server.recvBufferSize)
})
