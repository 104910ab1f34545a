import t from 'tap'
import type { Socket } from 'node:net'
import { startProxy, waitFor } from '../fixtures/proxy.js'
import { closed, metricValue, openWs, RAW_101, rawRequest, roundTrip, startRawMember, startWsUpstream, upgradeHead } from './websocket-fixtures.js'

t.test('idle timeout: traffic keeps a tunnel open; no byte either way for idle_timeout_ms closes both sides', async (t) => {
  const up = await startWsUpstream('u')
  const proxy = await startProxy(`
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: p, websocket: { idle_timeout_ms: 300 } }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const { ws } = await openWs(`${proxy.url}/ws`)
  t.teardown(() => ws.terminate())
  let closedAt = 0
  let lastByte = Date.now()
  ws.once('close', () => { closedAt = Date.now() })
  ws.on('message', () => { lastByte = Date.now() })
  // A message every 100 ms for 600 ms: twice the idle timeout, and the tunnel stays.
  let ticks = 0
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (++ticks > 6) { clearInterval(timer); resolve(); return }
      ws.send('tick')
    }, 100)
  })
  t.equal(closedAt, 0, 'still open after twice the idle timeout with traffic')
  await closed(ws)
  t.ok(closedAt - lastByte >= 250, `closed once quiet for the idle timeout (${closedAt - lastByte} ms after the last echo)`)
  await waitFor(() => up.open.size === 0, 5000, 'the member side closed too')
  await waitFor(async () => await metricValue(proxy.app.registry, 'switchyard_websocket_tunnels_closed_total', { route: 'r', pool: 'p', reason: 'idle_timeout' }) === 1, 5000, 'counted as idle_timeout')
})

t.test('max_tunnels: the next upgrade gets 503 with Retry-After; a closed tunnel frees its slot; other routes are not affected', async (t) => {
  const up = await startWsUpstream('u')
  const proxy = await startProxy(`
pools: { p: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: capped, match: { path_prefix: /capped }, pool: p, websocket: { max_tunnels: 2 } }
  - { name: free, match: {}, pool: p }
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const a = (await openWs(`${proxy.url}/capped/1`)).ws
  const b = (await openWs(`${proxy.url}/capped/2`)).ws
  t.teardown(() => { a.terminate(); b.terminate() })
  const err = await openWs(`${proxy.url}/capped/3`).then(() => undefined, (e: { status?: number; headers?: Record<string, string>; body?: string }) => e)
  t.equal(err?.status, 503)
  t.equal(err?.headers?.['retry-after'], '1')
  t.equal(err?.headers?.connection, 'close')
  t.match(err?.body, /route capped: too many WebSocket tunnels \(max_tunnels 2\)/)
  t.equal(up.upgrades.length, 2, 'the member never saw the third')
  const other = (await openWs(`${proxy.url}/elsewhere`)).ws
  t.equal((await roundTrip(other, 'ok')).data.toString(), 'ok', 'another route still opens tunnels')
  other.close()
  t.equal(await metricValue(proxy.app.registry, 'switchyard_websocket_tunnels_total', { route: 'capped', pool: 'p', result: 'limit' }), 1)
  t.equal(await metricValue(proxy.app.registry, 'switchyard_requests_total', { route: 'capped', pool: 'p', method: 'GET', code: '503' }), 1)

  a.close()
  await closed(a)
  await waitFor(async () => await metricValue(proxy.app.registry, 'switchyard_websocket_tunnels_open', { route: 'capped', pool: 'p' }) === 1, 5000, 'the slot freed')
  const c = (await openWs(`${proxy.url}/capped/4`)).ws
  t.teardown(() => c.terminate())
  t.equal((await roundTrip(c, 'in')).data.toString(), 'in')
})

t.test('a saturated pool (max_requests, no queue) refuses the handshake with 503; the slot is held only until the 101', async (t) => {
  let held: Socket | undefined
  const member = await startRawMember((socket) => {
    // The first handshake is held until the test lets it through; later ones switch at once.
    if (held === undefined) held = socket
    else socket.write(RAW_101)
  })
  const proxy = await startProxy(`
pools: { p: { max_requests: 1, queue: { size: 0 }, members: [{ url: "${member.url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await member.close() })
  const host = proxy.url.slice(7)
  const first = rawRequest(proxy.url, upgradeHead('/1', host))
  await waitFor(() => held !== undefined, 5000, 'the first handshake reached the member')
  const second = await rawRequest(proxy.url, upgradeHead('/2', host))
  t.equal(second.status, 503, 'max_requests is taken by the handshake in progress')
  t.equal(second.fields['retry-after'], '1')
  second.socket.destroy()
  held?.write(RAW_101)
  const one = await first
  t.teardown(() => one.socket.destroy())
  t.equal(one.status, 101)
  const third = await rawRequest(proxy.url, upgradeHead('/3', host))
  t.teardown(() => third.socket.destroy())
  t.equal(third.status, 101, 'an open tunnel does not hold max_requests (max_tunnels caps tunnels)')
})

t.test('shutdown: tunnels keep working until the drain deadline, then are closed; shutdown waits for them', async (t) => {
  const up = await startWsUpstream('u')
  const proxy = await startProxy(`
limits: { shutdown_timeout_ms: 700 }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const { ws } = await openWs(`${proxy.url}/ws`)
  t.teardown(() => ws.terminate())
  const started = Date.now()
  const stopping = proxy.app.shutdown('test')
  t.equal((await roundTrip(ws, 'during drain')).data.toString(), 'during drain', 'the tunnel still relays while draining')
  t.equal(proxy.app.ready(), false, 'not ready while draining')
  const code = await closed(ws)
  const at = Date.now() - started
  t.ok(at >= 600, `closed at the deadline (${at} ms), not before`)
  t.equal(code, 1006, 'closed by the proxy, without a close frame')
  await stopping
  await waitFor(() => up.open.size === 0, 5000, 'the member side closed')
  await waitFor(async () => await metricValue(proxy.app.registry, 'switchyard_websocket_tunnels_closed_total', { route: 'r', pool: 'p', reason: 'shutdown' }) === 1, 5000, 'counted as closed by the shutdown')
})

t.test('shutdown finishes early when the last tunnel ends by itself', async (t) => {
  const up = await startWsUpstream('u')
  const proxy = await startProxy(`
limits: { shutdown_timeout_ms: 10000 }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const { ws } = await openWs(`${proxy.url}/ws`)
  const started = Date.now()
  const stopping = proxy.app.shutdown('test')
  ws.close(1000, 'done')
  t.equal(await closed(ws), 1000)
  await stopping
  t.ok(Date.now() - started < 5000, 'without waiting for the deadline')
})

t.test('an upgrade arriving on a kept-alive connection during shutdown gets 503 with Connection: close, no tunnel', async (t) => {
  const up = await startWsUpstream('u')
  const proxy = await startProxy(`
limits: { shutdown_timeout_ms: 3000 }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  // A connection kept alive by a first answer, then the drain begins.
  const host = new URL(proxy.url).host
  const first = await rawRequest(proxy.url, `HEAD /plain HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
  t.equal(first.status, 200)
  t.notOk(/close/i.test(first.fields.connection ?? ''), 'kept alive before the shutdown')
  const socket: Socket = first.socket
  const stopping = proxy.app.shutdown('test')
  const answer = await new Promise<string>((resolve) => {
    let got = ''
    socket.on('data', (d: Buffer) => { got += d.toString('latin1') })
    socket.on('close', () => resolve(got))
    socket.resume()
    socket.write(upgradeHead('/ws', host))
  })
  t.match(answer, /^HTTP\/1\.1 503 /, 'refused while draining')
  t.match(answer, /\r\nconnection: close\r\n/i)
  t.match(answer, /\r\nretry-after: 1\r\n/i)
  t.equal(up.upgrades.length, 0, 'the member never saw the upgrade')
  await stopping
  t.equal(await metricValue(proxy.app.registry, 'switchyard_websocket_tunnels_total', { route: 'r', pool: 'p', result: 'draining' }), 1)
})
