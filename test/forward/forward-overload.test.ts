/**
 * limits.max_event_loop_delay_ms sheds forward traffic as it does reverse traffic: while the
 * event loop lags, a forward request gets 503 with Retry-After and never reaches the origin.
 */
import t from 'tap'
import { startProxy, waitFor } from '../fixtures/proxy.js'
import { startUpstream } from '../fixtures/upstream.js'
import { viaProxy } from './forward-setup.js'

t.test('a forward request is shed with 503 while the event loop is overloaded', async (t) => {
  const up = await startUpstream('origin')
  t.teardown(() => up.close())
  const proxy = await startProxy(`
listen:
  - { port: 0 }
  - { port: 0, mode: forward }
limits: { max_event_loop_delay_ms: 20 }
pools: { web: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: [{ name: all, match: {}, pool: web }]
forward:
  clients: [127.0.0.1]
  allow: [{ cidr: 127.0.0.1/32, ports: [${up.port}] }]
`)
  t.teardown(() => proxy.close())
  const target = `http://127.0.0.1:${up.port}/`
  t.equal((await viaProxy(proxy.urls[1], target)).status, 200)
  let shed: Awaited<ReturnType<typeof viaProxy>> | undefined
  let reached = -1
  await waitFor(async () => {
    const until = Date.now() + 150
    while (Date.now() < until) { /* hold the event loop, as a CPU-bound overload would */ }
    const before = up.hits
    const r = await viaProxy(proxy.urls[1], target)
    if (r.status === 503) {
      shed = r
      reached = up.hits - before
    }
    return shed !== undefined
  }, 10000, 'a 503 while overloaded')
  t.equal(shed?.headers['retry-after'], '1')
  t.match(shed?.body, /overloaded/)
  t.equal(reached, 0, 'the shed request never reached the origin')
})
