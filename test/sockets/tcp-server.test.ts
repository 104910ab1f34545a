import { connect, type Socket } from 'node:net'
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
  const server = await setup(t, { maxPerAddress: 0 }) // all from 127.0.0.1: no per-address cap here
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

/** A client that keeps sending (64 KiB writes, as fast as the socket takes them) until the connection goes. */
function firehose(port: number, host = '127.0.0.1') {
  const socket = connect({ port, host })
  const state = { sent: 0, received: '', closed: false, stop: false }
  const chunk = Buffer.alloc(64 * 1024, 'z')
  socket.on('error', () => { /* reset by the server: expected */ })
  socket.on('data', (d: Buffer) => { state.received += d.toString('utf8') })
  socket.on('close', () => { state.closed = true })
  const pump = (): void => {
    while (!state.stop && !socket.destroyed && socket.writable) {
      state.sent += chunk.length
      if (!socket.write(chunk)) return void socket.once('drain', pump)
    }
  }
  socket.once('connect', pump)
  return { socket, state }
}

t.test('after "line too long" a client that keeps sending is cut off: the server stops reading', async (t) => {
  const server = await setup(t, { flushMs: 0, maxLineBytes: 1024, lingerMs: 5000 })
  const hose = firehose(server.port)
  t.teardown(() => hose.socket.destroy())
  await waitFor(() => hose.state.closed, 10000, 'the server to close the connection')
  await waitFor(() => server.connections === 0 && server.openSockets === 0, 5000, 'the server to let go of the socket')
  const read = await metric(server, 'switchyard_socket_bytes_total', { direction: 'in' })
  t.ok(read < 512 * 1024, `the server read ${read} bytes (the line, one read, at most 64 KiB discarded), not everything the client pushed`)
  t.ok(hose.state.sent > read, `the client had pushed ${hose.state.sent} bytes by then`)
  t.equal(await metric(server, 'switchyard_socket_messages_total', { outcome: 'line_too_long' }), 1)
  t.ok(['', 'ERROR line too long (limit 1024 bytes)\n'].includes(hose.state.received), `the client read nothing but the error line: ${JSON.stringify(hose.state.received)}`)
})

t.test('after an error line a client that trickles bytes is cut off after --linger-ms, not kept for ever', async (t) => {
  const server = await setup(t, { flushMs: 0, maxLineBytes: 16, lingerMs: 200 })
  const p = await probe(t, server)
  p.socket.write('x'.repeat(100))
  await p.waitForText('ERROR line too long (limit 16 bytes)\n')
  // A byte every 10 ms: never quiet (the idle timeout would never fire), never over the discard budget.
  const drip = setInterval(() => { if (!p.socket.destroyed && p.socket.writable) p.socket.write('x') }, 10)
  t.teardown(() => clearInterval(drip))
  await waitFor(() => p.closed, 5000, 'the server to cut the lingering connection')
  await waitFor(() => server.openSockets === 0, 5000, 'the socket to be released')
  t.equal(p.text(), 'ERROR line too long (limit 16 bytes)\n')
})

t.test('a polite client that closes after the error line is released at once, without waiting for the linger', async (t) => {
  const server = await setup(t, { flushMs: 0, maxLineBytes: 16, lingerMs: 60000 })
  const p = await probe(t, server)
  p.socket.write('y'.repeat(100) + '\nmore in flight\n')
  await p.waitForText('ERROR line too long (limit 16 bytes)\n')
  p.socket.end()
  await waitFor(() => server.openSockets === 0, 5000, 'the server to close (the linger is 60 s)')
  await p.waitForEnd()
  t.same(p.errors, [], 'a clean close, no reset')
})

t.test('refused clients that keep sending hold no sockets and cost no reads', async (t) => {
  const server = await setup(t, { maxConnections: 5, maxPerAddress: 0 })
  const served = await Promise.all(Array.from({ length: 5 }, () => probe(t, server)))
  await waitFor(() => server.connections === 5, 5000, 'five served')
  const hoses = Array.from({ length: 100 }, () => firehose(server.port))
  t.teardown(() => { for (const h of hoses) h.socket.destroy() })
  await waitFor(() => hoses.every((h) => h.state.closed), 20000, 'all 100 refused clients to be disconnected')
  await waitFor(() => server.openSockets === 5, 5000, 'only the served sockets to remain')
  t.equal(server.connections, 5)
  t.equal(await metric(server, 'switchyard_socket_connections_total', { outcome: 'rejected' }), 100)
  t.equal(await metric(server, 'switchyard_socket_errors_total', { kind: 'max_connections' }), 100)
  t.equal(await metric(server, 'switchyard_socket_bytes_total', { direction: 'in' }), 0, 'not one byte of theirs was read')
  const told = hoses.filter((h) => h.state.received === 'ERROR too many connections (limit 5)\n').length
  t.comment(`${told} of 100 read the error line before the reset`)
  t.ok(hoses.every((h) => h.state.received === '' || h.state.received === 'ERROR too many connections (limit 5)\n'), 'nothing but the error line')
  served[0].socket.write('still served\n')
  await served[0].waitForText('STILL SERVED\n')
})

t.test('a refused client that does not send reads the error line and a clean close', async (t) => {
  const server = await setup(t, { maxConnections: 1 })
  await probe(t, server)
  const c = await probe(t, server)
  await c.waitForEnd()
  c.socket.end() // the probe allows half-open connections: our side is ours to close
  await waitFor(() => c.closed, 5000, 'the close')
  t.equal(c.text(), 'ERROR too many connections (limit 1)\n')
  t.same(c.errors, [], 'no reset')
  await waitFor(() => server.openSockets === 1, 5000, 'the refused socket to be released')
})

t.test('a character whose bytes arrive further apart than --flush-ms is not split', async (t) => {
  const server = await setup(t, { flushMs: 20 })
  const p = await probe(t, server)
  p.socket.write(Buffer.from([0x63, 0x61, 0x66, 0xc3])) // 'caf' + the first byte of 'é'
  await p.waitForText('CAF\n') // the flush happened: the complete part is answered, the partial 'é' waits
  p.socket.write(Buffer.from([0xa9, 0x20, 0x6f, 0x6b])) // the rest of 'é', ' ok'
  await p.waitForText('É OK\n')
  t.equal(p.text(), 'CAF\nÉ OK\n', 'no U+FFFD')

  const q = await probe(t, server)
  const face = Buffer.from('😀') // 4 bytes
  q.socket.write(face.subarray(0, 1))
  await new Promise((r) => setTimeout(r, 100)) // five flush intervals with only a partial character pending
  q.socket.write(face.subarray(1, 3))
  await new Promise((r) => setTimeout(r, 100))
  q.socket.write(Buffer.concat([face.subarray(3), Buffer.from('!\n')]))
  await q.waitForText('!\n')
  t.equal(q.text(), '😀!\n', 'one answer, the character whole')
})

t.test('invalid and truncated UTF-8 still become U+FFFD', async (t) => {
  const server = await setup(t, { flushMs: 20 })
  const p = await probe(t, server)
  p.socket.write(Buffer.from([0x68, 0xff, 0x69])) // flushed by quiet: the invalid byte is not held back
  await p.waitForText('H\uFFFDI\n')
  p.socket.write(Buffer.from([0x61, 0xe2, 0x82, 0x21, 0x0a])) // a truncated '€' followed by '!'
  await p.waitForText('A\uFFFD!\n')
  p.socket.end(Buffer.from([0x62, 0xe2, 0x82])) // truncated at the half-close: answered as it is
  await p.waitForEnd()
  t.equal(p.text(), 'H\uFFFDI\nA\uFFFD!\nB\uFFFD\n')
})

function connectFrom(t: Teardown, port: number, localAddress: string, host = '127.0.0.1'): Promise<Socket & { text: () => string }> {
  const socket = connect({ port, host, localAddress })
  let text = ''
  socket.on('data', (d: Buffer) => { text += d.toString('utf8') })
  socket.on('error', () => { /* checked through what was read */ })
  t.teardown(() => socket.destroy())
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(Object.assign(socket, { text: () => text })))
    socket.once('error', reject)
  })
}

t.test('--max-per-address: one address cannot take every slot, another still connects', async (t) => {
  const server = await setup(t, { maxPerAddress: 2, maxConnections: 100 })
  const a1 = await connectFrom(t, server.port, '127.0.0.1')
  const a2 = await connectFrom(t, server.port, '127.0.0.1')
  await waitFor(() => server.connections === 2, 5000, 'two from 127.0.0.1')
  const a3 = await connectFrom(t, server.port, '127.0.0.1')
  await waitFor(() => a3.text() !== '' && a3.closed, 5000, 'the third from 127.0.0.1 to be refused')
  t.equal(a3.text(), 'ERROR too many connections from your address (limit 2)\n')
  t.equal(await metric(server, 'switchyard_socket_errors_total', { kind: 'max_connections_per_address' }), 1)
  t.equal(await metric(server, 'switchyard_socket_connections_total', { outcome: 'rejected' }), 1)
  const b = await connectFrom(t, server.port, '127.0.0.2')
  b.write('other host\n')
  await waitFor(() => b.text() === 'OTHER HOST\n', 5000, 'the client from 127.0.0.2 to be served')
  a1.end()
  await waitFor(() => server.connections === 2, 5000, 'a slot of 127.0.0.1 to free up')
  const a4 = await connectFrom(t, server.port, '127.0.0.1')
  a4.write('freed\n')
  await waitFor(() => a4.text() === 'FREED\n', 5000, 'the freed slot to be reused')
  a2.write('still here\n')
  await waitFor(() => a2.text() === 'STILL HERE\n', 5000, 'the others to be unaffected')
})

t.test("--max-per-address on '::': IPv4-mapped clients count as their IPv4 address", async (t) => {
  const server = await setup(t, { host: '::', maxPerAddress: 1 })
  const v4 = await connectFrom(t, server.port, '127.0.0.1', '127.0.0.1')
  await waitFor(() => server.connections === 1)
  const again = await connectFrom(t, server.port, '127.0.0.1', '127.0.0.1')
  await waitFor(() => again.closed, 5000, 'the second IPv4 connection to be refused')
  t.equal(again.text(), 'ERROR too many connections from your address (limit 1)\n')
  const v6 = await connectFrom(t, server.port, '::1', '::1')
  v6.write('six\n')
  await waitFor(() => v6.text() === 'SIX\n', 5000, '::1 to be served')
  v4.write('four\n')
  await waitFor(() => v4.text() === 'FOUR\n', 5000, 'the IPv4 client to be served')
})

t.test('--max-per-address 0 turns the cap off', async (t) => {
  const server = await setup(t, { maxPerAddress: 0, maxConnections: 100 })
  const clients = await Promise.all(Array.from({ length: 70 }, () => probe(t, server)))
  await waitFor(() => server.connections === 70, 10000, '70 connections from one address (over the default 64)')
  clients[69].socket.write('last\n')
  await clients[69].waitForText('LAST\n')
})

t.test('the default per-address cap is 64', async (t) => {
  const server = await setup(t)
  const clients = await Promise.all(Array.from({ length: 65 }, () => probe(t, server)))
  await waitFor(() => clients.filter((c) => c.ended).length === 1, 10000, 'one of 65 to be refused')
  t.equal(clients.find((c) => c.ended)?.text(), 'ERROR too many connections from your address (limit 64)\n')
  t.equal(server.connections, 64)
})
