/**
 * CONNECT tunnels: bytes both ways with backpressure (a reader that stops stalls the writer
 * instead of filling the proxy's memory), allowed ports only, idle timeout, byte counters,
 * 502/504 when the origin cannot be reached, closed on shutdown.
 */
import t from 'tap'
import { createServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import type { LookupAddress } from 'node:dns'
import { fetchText, waitFor, type TestProxy } from '../fixtures/proxy.js'
import { deadPort } from '../fixtures/upstream.js'
import type { Resolver } from '../../src/forward/safe-lookup.js'
import { connectVia, sample, startForwardProxy } from './forward-setup.js'
import { lintExposition } from '../../src/metrics/exposition-lint.js'

type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

/** A TCP origin; each accepted socket is handed to `onSocket`. */
async function tcpOrigin(t: Tap, onSocket: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(onSocket)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.close(() => resolve()) }))
  return { server, port: (server.address() as AddressInfo).port }
}

/** Resolves nothing, ever: a connect that never completes (the connect timeout's case). */
const hangingResolver = ((_h: string, _o: unknown, _cb: (err: Error | null, a: string | LookupAddress[]) => void) => {}) as unknown as Resolver

function forwardProxy(t: Tap, forward: string, extra = '', resolver?: Resolver): Promise<TestProxy & { forwardUrl: string }> {
  return startForwardProxy(t, `  clients: [127.0.0.1]\n${forward}`, { extra, resolver })
}

const CHUNK = Buffer.alloc(64 * 1024, 7)
const TOTAL = 64 * 1024 * 1024

/**
 * Writes TOTAL bytes into `w`, honouring its backpressure. Resolves `stalled` when a write has
 * waited 1 s for 'drain' (the reader stopped, and backpressure reached the writer), with the
 * bytes accepted until then; `done` when everything was written.
 */
function pump(w: Socket): { stalled: Promise<number>; done: Promise<void> } {
  let sent = 0
  let stallSeen: (n: number) => void = () => {}
  const stalled = new Promise<number>((resolve) => { stallSeen = resolve })
  const done = new Promise<void>((resolve, reject) => {
    w.on('error', reject)
    const more = (): void => {
      while (sent < TOTAL) {
        sent += CHUNK.length
        if (!w.write(CHUNK)) {
          const timer = setTimeout(() => stallSeen(sent), 1000)
          w.once('drain', () => { clearTimeout(timer); more() })
          return
        }
      }
      resolve()
    }
    more()
  })
  return { stalled, done }
}

/** Counts bytes from `r`, paused until resume() is called. */
function slowReader(r: Socket): { resume(): void; received: () => number; all: Promise<void> } {
  let n = 0
  r.pause()
  const all = new Promise<void>((resolve) => {
    r.on('data', (c: Buffer) => {
      n += c.length
      if (n >= TOTAL) resolve()
    })
  })
  return { resume: () => r.resume(), received: () => n, all }
}

t.test('a tunnel carries 64 MiB each way; a reader that stops stalls the writer through the proxy', async (t) => {
  let originSide: Socket | undefined
  const origin = await tcpOrigin(t, (s) => { originSide = s })
  const proxy = await forwardProxy(t, `  allow: [{ cidr: 127.0.0.1/32 }]\n  connect_ports: [${origin.port}]`)
  const c = await connectVia(proxy.forwardUrl, `127.0.0.1:${origin.port}`)
  t.equal(c.status, 200)
  t.teardown(() => c.socket.destroy())
  await waitFor(() => originSide !== undefined, 5000, 'the origin to accept')
  const server = originSide as Socket

  // Upstream: client writes, the origin does not read.
  const up = slowReader(server)
  const upPump = pump(c.socket)
  const acceptedUp = await upPump.stalled
  t.ok(acceptedUp < TOTAL / 2, `the client was stalled after ${(acceptedUp / 1048576).toFixed(1)} MiB (socket buffers, not the proxy's memory)`)
  up.resume()
  await Promise.all([upPump.done, up.all])
  t.equal(up.received(), TOTAL, 'every byte arrived at the origin')

  // Downstream: the origin writes, the client does not read.
  const down = slowReader(c.socket)
  const downPump = pump(server)
  const acceptedDown = await downPump.stalled
  t.ok(acceptedDown < TOTAL / 2, `the origin was stalled after ${(acceptedDown / 1048576).toFixed(1)} MiB`)
  down.resume()
  await Promise.all([downPump.done, down.all])
  t.equal(down.received(), TOTAL, 'every byte arrived at the client')

  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  t.equal(sample(metrics, 'switchyard_forward_bytes_total', 'direction="upstream"'), TOTAL)
  t.equal(sample(metrics, 'switchyard_forward_bytes_total', 'direction="downstream"'), TOTAL)
  t.equal(sample(metrics, 'switchyard_forward_tunnels_total', 'result="opened"'), 1)
  t.equal(sample(metrics, 'switchyard_forward_tunnels_active', ''), 1)
  t.equal(sample(metrics, 'switchyard_forward_requests_total', 'method="CONNECT",code="200"'), 1)
  t.same(lintExposition(metrics), [], 'the exposition lint finds nothing (forward families included)')
  c.socket.end()
  await waitFor(async () => sample((await fetchText(`${proxy.adminUrl}/metrics`)).body, 'switchyard_forward_tunnels_active', '') === 0, 5000, 'the tunnel to close')
})

t.test('CONNECT only to forward.connect_ports (443 by default), and only where the rules allow', async (t) => {
  const proxy = await forwardProxy(t, `  allow: [{ cidr: 127.0.0.1/32 }]`)
  const ssh = await connectVia(proxy.forwardUrl, '127.0.0.1:22')
  t.equal(ssh.status, 403)
  t.equal(ssh.body, '403 Forbidden: denied by forward.connect_ports (CONNECT to port 22 is not allowed)\n')
  const elsewhere = await connectVia(proxy.forwardUrl, 'example.com:443')
  t.equal(elsewhere.status, 403)
  t.equal(elsewhere.body, '403 Forbidden: denied by forward.allow (no rule allows example.com:443)\n')
  const bad = await connectVia(proxy.forwardUrl, 'no-port')
  t.equal(bad.status, 400)
  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  t.equal(sample(metrics, 'switchyard_forward_tunnels_total', 'result="denied"'), 2)
  t.equal(sample(metrics, 'switchyard_forward_denials_total', 'rule="forward.connect_ports"'), 1)
})

t.test('an idle tunnel is closed after forward.tunnel_idle_timeout_ms; traffic keeps it open', async (t) => {
  const origin = await tcpOrigin(t, (s) => { s.on('data', (d) => s.write(d)) })
  const proxy = await forwardProxy(t, `  allow: [{ cidr: 127.0.0.1/32 }]\n  connect_ports: [${origin.port}]\n  tunnel_idle_timeout_ms: 300`)
  const c = await connectVia(proxy.forwardUrl, `127.0.0.1:${origin.port}`)
  t.equal(c.status, 200)
  let closed = false
  let closedAt = 0
  let lastData = 0
  c.socket.on('close', () => { closed = true; closedAt = Date.now() })
  let echoed = ''
  c.socket.setEncoding('utf8')
  c.socket.on('data', (d: string) => { echoed += d; lastData = Date.now() })
  // Traffic every 100 ms for 600 ms: twice the idle timeout, never idle that long.
  for (let i = 0; i < 6; i++) {
    c.socket.write(`${i}`)
    await waitFor(() => echoed.length === i + 1, 2000, `echo ${i}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  t.notOk(closed, 'a busy tunnel stays open')
  await waitFor(() => closed, 3000, 'the idle tunnel to close')
  t.ok(closedAt - lastData >= 250, `closed ${closedAt - lastData} ms after the last byte (timeout 300 ms)`)
})

t.test('origin unreachable: 502; connect timeout: 504', async (t) => {
  const dead = await deadPort()
  const proxy = await forwardProxy(t, `  allow: [{ cidr: 127.0.0.1/32 }, { host: slow.test }]\n  connect_ports: [${dead}]\n  timeouts: { connect_ms: 300 }`, '', hangingResolver)
  const refused = await connectVia(proxy.forwardUrl, `127.0.0.1:${dead}`)
  t.equal(refused.status, 502)
  t.match(refused.body, /refused/)
  const slow = await connectVia(proxy.forwardUrl, `slow.test:${dead}`)
  t.equal(slow.status, 504)
  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  t.equal(sample(metrics, 'switchyard_forward_tunnels_total', 'result="error"'), 2)
})

t.test('open tunnels are closed when the proxy shuts down (after the drain deadline)', async (t) => {
  const origin = await tcpOrigin(t, (s) => { s.on('data', (d) => s.write(d)) })
  const proxy = await forwardProxy(t, `  allow: [{ cidr: 127.0.0.1/32 }]\n  connect_ports: [${origin.port}]`, 'limits: { shutdown_timeout_ms: 200 }')
  const c = await connectVia(proxy.forwardUrl, `127.0.0.1:${origin.port}`)
  t.equal(c.status, 200)
  let closed = false
  c.socket.on('close', () => { closed = true })
  c.socket.resume()
  await proxy.app.shutdown('test')
  await waitFor(() => closed, 3000, 'the tunnel to close')
  t.pass('closed')
})
