import { connect } from 'node:net'
import t from 'tap'
import { waitFor } from '../fixtures/proxy.js'
import { tcpProbe, type Teardown } from '../fixtures/sockets.js'
import { metricValue } from '../../src/sockets/socket-metrics.js'
import { startTcpServer, type TcpServer, type TcpServerOptions } from '../../src/sockets/tcp-server.js'

async function setup(t: Teardown, opts: TcpServerOptions = {}): Promise<TcpServer> {
  const server = await startTcpServer({ port: 0, host: '127.0.0.1', ...opts })
  t.teardown(() => server.close())
  return server
}
async function probe(t: Teardown, server: TcpServer) {
  const p = await tcpProbe(server.port)
  t.teardown(() => p.socket.destroy())
  return p
}
const metric = (s: TcpServer, name: string, labels: Record<string, string> = {}) => metricValue(s.registry, name, { server: 'tcp', ...labels })

t.test("the lab's exchange: send a sentence without newline, wait for the answer without closing", async (t) => {
  const server = await setup(t)
  const p = await probe(t, server)
  p.socket.write('hello from the lab')
  await p.waitForText('HELLO FROM THE LAB\n')
  t.notOk(p.ended, 'the connection stays open')
  p.socket.write('and again\n')
  await p.waitForText('AND AGAIN\n')
  t.equal(p.text(), 'HELLO FROM THE LAB\nAND AGAIN\n')
})

t.test('a final line ended by a half-close is answered, then the server closes', async (t) => {
  const server = await setup(t, { flushMs: 0 }) // no quiet-line flush: only the half-close can end the line
  const p = await probe(t, server)
  p.socket.end('one\ntwo')
  await p.waitForEnd()
  t.equal(p.text(), 'ONE\nTWO\n')
})

t.test('several lines per connection, split anywhere, CRLF accepted', async (t) => {
  const server = await setup(t, { flushMs: 0 }) // framing only: a slow machine must not turn a pause into a message
  const p = await probe(t, server)
  p.socket.write('one\r\ntw')
  p.socket.write('o\nthr')
  p.socket.write('ee\n\n')
  await p.waitForText('THREE\n\n')
  t.equal(p.text(), 'ONE\nTWO\nTHREE\n\n', 'an empty line gets an empty answer')
  t.equal(await metric(server, 'switchyard_socket_messages_total', { outcome: 'answered' }), 4)
})

t.test('Unicode upper-casing and invalid UTF-8', async (t) => {
  const server = await setup(t)
  const p = await probe(t, server)
  p.socket.write('straße ﬁx\n')
  p.socket.write(Buffer.from([0x68, 0xff, 0x69, 0x0a]))
  await p.waitForText('H\uFFFDI\n')
  t.equal(p.text(), 'STRASSE FIX\nH\uFFFDI\n')
})

t.test('a line over the limit gets an error line, then the connection closes', async (t) => {
  const server = await setup(t, { flushMs: 0 })
  const atLimit = await probe(t, server)
  atLimit.socket.write('b'.repeat(65536) + '\n')
  await atLimit.waitForText('\n')
  t.equal(atLimit.text(), 'B'.repeat(65536) + '\n', 'exactly 64 KiB is fine')
  const p = await probe(t, server)
  p.socket.write('a'.repeat(70000) + '\nnever answered\n')
  await p.waitForEnd()
  t.equal(p.text(), 'ERROR line too long (limit 65536 bytes)\n')
  t.equal(await metric(server, 'switchyard_socket_messages_total', { outcome: 'line_too_long' }), 1)
  p.socket.end()
  await waitFor(() => server.connections === 1, 5000, 'the server to drop the connection')
})

t.test('a client that connects and says nothing is closed after the idle timeout', async (t) => {
  const server = await setup(t, { idleTimeoutMs: 100 })
  const p = await probe(t, server)
  await p.waitForEnd()
  t.equal(p.text(), 'ERROR idle timeout (100 ms)\n')
  t.equal(await metric(server, 'switchyard_socket_errors_total', { kind: 'idle_timeout' }), 1)
  await waitFor(() => server.connections === 0, 5000, 'the server to close its side')
})

t.test('clients that disconnect mid-message do not hurt the server', async (t) => {
  const server = await setup(t)
  const rude = await probe(t, server)
  rude.socket.write('half a mess')
  await waitFor(async () => (await metric(server, 'switchyard_socket_bytes_total', { direction: 'in' })) === 11)
  rude.socket.resetAndDestroy() // RST
  await waitFor(() => server.connections === 0, 5000, 'the reset connection to go')
  t.equal(await metric(server, 'switchyard_socket_errors_total', { kind: 'reset' }), 1, 'ECONNRESET counted')
  const gone = await probe(t, server)
  gone.socket.write('half')
  gone.socket.destroy() // FIN without reading the answer
  await waitFor(() => server.connections === 0, 5000, 'the closed connection to go')
  const next = await probe(t, server)
  next.socket.write('still serving\n')
  await next.waitForText('STILL SERVING\n')
  t.pass('the next client is served')
})

t.test('300 concurrent connections each get their own answer', async (t) => {
  const server = await setup(t)
  const clients = await Promise.all(Array.from({ length: 300 }, () => probe(t, server)))
  await waitFor(() => server.connections === 300, 10000, 'the server to accept all 300')
  clients.forEach((c, i) => c.socket.write(`client number ${i}\n`))
  await Promise.all(clients.map((c, i) => c.waitForText(`CLIENT NUMBER ${i}\n`, 20000)))
  t.ok(clients.every((c, i) => c.text() === `CLIENT NUMBER ${i}\n`), 'no answer went to the wrong client')
  t.equal(await metric(server, 'switchyard_socket_active_connections'), 300)
  for (const c of clients) c.socket.end()
  await waitFor(() => server.connections === 0, 10000, 'all connections to close')
})

t.test('over max connections: an error line and close; a freed slot is reused', async (t) => {
  const server = await setup(t, { maxConnections: 2 })
  const a = await probe(t, server)
  const b = await probe(t, server)
  a.socket.write('a\n')
  b.socket.write('b\n')
  await a.waitForText('A\n')
  await b.waitForText('B\n')
  const c = await probe(t, server)
  await c.waitForEnd()
  t.equal(c.text(), 'ERROR too many connections (limit 2)\n')
  t.equal(await metric(server, 'switchyard_socket_connections_total', { outcome: 'rejected' }), 1)
  a.socket.end()
  await waitFor(() => server.connections === 1)
  const d = await probe(t, server)
  d.socket.write('d\n')
  await d.waitForText('D\n')
})

t.test('backpressure: a client that sends a lot and never reads is paused, others are served', async (t) => {
  const server = await setup(t)
  const hog = connect({ port: server.port, host: '127.0.0.1' })
  hog.on('error', () => { /* destroyed at the end */ })
  t.teardown(() => hog.destroy())
  // 64 MiB of 1 KiB lines, and no 'data' listener: our answers pile up in the kernel until the
  // server's writes stop completing.
  const flood = Buffer.alloc(64 * 1024 * 1024, 'a')
  for (let i = 1023; i < flood.length; i += 1024) flood[i] = 0x0a
  hog.write(flood)
  await waitFor(async () => (await metric(server, 'switchyard_socket_paused_connections')) === 1, 30000, 'the server to pause the hog')
  const readAtPause = await metric(server, 'switchyard_socket_bytes_total', { direction: 'in' })
  const other = await probe(t, server)
  other.socket.write('others are served\n')
  await other.waitForText('OTHERS ARE SERVED\n')
  const readLater = await metric(server, 'switchyard_socket_bytes_total', { direction: 'in' })
  t.equal(readLater - readAtPause, 18, 'nothing more was read from the hog while it was paused (the 18 bytes are the other client)')
  t.ok(readAtPause < flood.length / 2, `the server read ${readAtPause} of ${flood.length} bytes: bounded by socket buffers, not by what the client sent`)
  hog.destroy()
  await waitFor(async () => server.connections === 1 && (await metric(server, 'switchyard_socket_paused_connections')) === 0, 5000, 'the hog to be gone')
})
