/**
 * The lab's socket servers as attack surface. test/sockets/udp-server.test.ts and
 * test/sockets/tcp-server.test.ts prove each rule once (the 2x reply cap, the per-source
 * bucket with a fake clock, the line limit, idle timeout, max connections, pausing a reader
 * that does not read). These add what an attacker would try: payloads built to expand,
 * a flood from many spoofed sources, a line that never ends, a burst of connections, and a
 * client that floods without ever reading.
 */
import { connect } from 'node:net'
import t from 'tap'
import { waitFor } from '../fixtures/proxy.js'
import { tcpProbe, udpProbe } from '../fixtures/sockets.js'
import { metricValue } from '../../src/sockets/socket-metrics.js'
import { REPLY_TOO_LARGE, SourceRateLimiter, startUdpServer } from '../../src/sockets/udp-server.js'
import { startTcpServer } from '../../src/sockets/tcp-server.js'
import type { Teardown } from '../fixtures/security.js'

/** Payloads whose upper-case form is longer than they are, or that decode to U+FFFD (3 bytes per bad byte). */
const EXPANDING: Buffer[] = [
  Buffer.from('ΐ'.repeat(50)), // 2 bytes -> 6 bytes
  Buffer.from('ŉ'.repeat(50)), // 2 -> 3
  Buffer.from('ﬃ'.repeat(50)), // 3 -> 3
  Buffer.from('ß'.repeat(50)), // 2 -> 2
  Buffer.from('ΐa'.repeat(50)),
  Buffer.alloc(100, 0xff), // invalid UTF-8: 1 byte -> U+FFFD, 3 bytes
  Buffer.from([0xe2, 0x82]), // truncated sequence
  Buffer.from('ΐ'), // 2 bytes: even the error line would amplify
  Buffer.alloc(1, 0xff),
  Buffer.from('plain ascii text'),
  Buffer.alloc(0)
]

async function udp(t: Teardown, factor: number) {
  const server = await startUdpServer({ port: 0, host: '127.0.0.1', maxReplyFactor: factor, rateLimit: false })
  const client = await udpProbe()
  t.teardown(async () => { await client.close(); await server.close() })
  return { server, client }
}

t.test('UDP: no answer is ever larger than the configured factor of its request', async (t) => {
  for (const factor of [1, 2, 3]) {
    const { server, client } = await udp(t, factor)
    for (const payload of EXPANDING) {
      const before = client.received.length
      client.send(payload, server.port)
      // Datagrams on loopback arrive, and are answered, in order: a marker after the payload
      // tells us its answer (if any) has arrived.
      client.send('sync', server.port)
      await waitFor(() => client.received.slice(before).some((r) => String(r) === 'SYNC'), 5000, 'the marker')
      const replies = client.received.slice(before).filter((r) => String(r) !== 'SYNC')
      t.ok(replies.length <= 1, 'at most one answer per datagram')
      for (const r of replies) {
        t.ok(r.length <= payload.length * factor, `factor ${factor}: ${payload.length} bytes in, ${r.length} out${r.equals(REPLY_TOO_LARGE) ? ' (the error line)' : ''}`)
      }
    }
    const bytesIn = await metricValue(server.registry, 'switchyard_socket_bytes_total', { server: 'udp', direction: 'in' })
    await waitFor(async () => (await metricValue(server.registry, 'switchyard_socket_bytes_total', { server: 'udp', direction: 'out' })) > 0, 5000)
    const bytesOut = await metricValue(server.registry, 'switchyard_socket_bytes_total', { server: 'udp', direction: 'out' })
    t.ok(bytesOut <= bytesIn * factor, `factor ${factor}: ${bytesOut} bytes out for ${bytesIn} in, overall`)
  }
})

t.test('UDP: a flood from one source does not starve another, and answers stay within the cap', async (t) => {
  const server = await startUdpServer({ port: 0, host: '127.0.0.1', rateLimit: { burst: 10, ratePerSecond: 1 } })
  const flooder = await udpProbe('127.0.0.1')
  const other = await udpProbe('127.0.0.3')
  t.teardown(async () => { await flooder.close(); await other.close(); await server.close() })
  const count = async (outcome: string): Promise<number> => metricValue(server.registry, 'switchyard_socket_messages_total', { server: 'udp', outcome })
  for (let i = 0; i < 500; i++) flooder.send(`flood ${i}`, server.port)
  // The kernel may drop some of a burst: wait until the server has seen all it will see.
  let seen = -1
  let since = Date.now()
  await waitFor(async () => {
    const n = (await count('answered')) + (await count('rate_limited'))
    if (n !== seen) { seen = n; since = Date.now() }
    return n > 0 && Date.now() - since > 200
  }, 10000, 'the flood to be handled')
  const answered = await count('answered')
  t.ok(seen >= 100, `the server handled ${seen} of the 500 datagrams`)
  t.ok(answered <= 12, `and answered ${answered} of them (burst 10, 1/s)`)
  t.equal(await count('rate_limited'), seen - answered, 'the rest were dropped and counted')
  other.send('hello', server.port)
  t.equal(String(await other.nth(1)), 'HELLO', 'another source is still answered at once')
})

t.test('UDP: spoofed sources cost bounded memory', async (t) => {
  let now = 0
  const limiter = new SourceRateLimiter({ burst: 2, ratePerSecond: 1, maxSources: 100 }, () => now)
  for (let i = 0; i < 50000; i++) {
    limiter.allow(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)
    now += 0.01
  }
  t.equal(limiter.size, 100, '50,000 sources, 100 buckets tracked')
  t.ok(limiter.allow('192.0.2.1'), 'a new source is still served')
})

t.test('TCP: a line that never ends is cut at the limit', async (t) => {
  const server = await startTcpServer({ port: 0, host: '127.0.0.1', maxLineBytes: 1024, flushMs: 0 })
  t.teardown(() => server.close())
  const p = await tcpProbe(server.port)
  t.teardown(() => p.socket.destroy())
  const endless = Buffer.alloc(4 * 1024 * 1024, 'a')
  p.socket.write(endless)
  await p.waitForText('ERROR line too long', 5000)
  await p.waitForEnd(5000)
  t.equal(p.text(), 'ERROR line too long (limit 1024 bytes)\n')
  p.socket.destroy()
  await waitFor(() => server.connections === 0, 5000, 'the connection to go')
  t.pass('the connection was closed; the 4 MiB line never became a message')
})

t.test('TCP: a burst of connections never exceeds max connections', async (t) => {
  const server = await startTcpServer({ port: 0, host: '127.0.0.1', maxConnections: 5, idleTimeoutMs: 5000 })
  t.teardown(() => server.close())
  let peak = 0
  const sample = setInterval(() => { peak = Math.max(peak, server.connections) }, 1)
  t.teardown(() => clearInterval(sample))
  const probes = await Promise.all(Array.from({ length: 50 }, () => tcpProbe(server.port)))
  t.teardown(() => { for (const p of probes) p.socket.destroy() })
  await waitFor(() => probes.filter((p) => p.ended).length === 45, 10000, '45 connections to be refused')
  t.equal(server.connections, 5, 'five are served')
  t.ok(peak <= 5, `never more than five at once (peak ${peak})`)
  t.ok(probes.filter((p) => p.ended).every((p) => p.text().startsWith('ERROR too many connections')), 'the others were told why')
})

t.test('TCP: a client that floods and never reads is paused, then cut after the idle timeout', async (t) => {
  const server = await startTcpServer({ port: 0, host: '127.0.0.1', idleTimeoutMs: 300 })
  t.teardown(() => server.close())
  const hog = connect({ port: server.port, host: '127.0.0.1' })
  hog.on('error', () => { /* reset by the server */ })
  t.teardown(() => hog.destroy())
  hog.pause()
  const flood = Buffer.alloc(32 * 1024 * 1024, 'a')
  for (let i = 1023; i < flood.length; i += 1024) flood[i] = 0x0a
  hog.write(flood)
  const paused = (): Promise<number> => metricValue(server.registry, 'switchyard_socket_paused_connections', { server: 'tcp' })
  const t0 = Date.now()
  await waitFor(async () => (await paused()) === 1, 20000, 'the hog to be paused')
  t.comment(`paused after ${Date.now() - t0} ms`)
  await waitFor(() => server.connections === 0, 5000, 'the server to drop the hog').then(
    () => t.pass(`the server dropped a client that never reads (${Date.now() - t0} ms)`),
    () => t.fail('the server dropped a client that never reads'))
  t.equal(await paused(), 0, 'and no connection stays paused')
})
