/**
 * A CONNECT whose client hangs up while the proxy is still connecting (here: the name is still
 * resolving) must give its forward.max_tunnels slot back. It used to leak: the upstream socket was
 * destroyed without an error, so neither the error nor the 'connect' handler released the slot,
 * and after max_tunnels such hang-ups every CONNECT was refused with 503.
 */
import t from 'tap'
import { createServer } from 'node:net'
import { request as httpRequest } from 'node:http'
import type { Resolver } from '../../src/forward/safe-lookup.js'
import { connectVia, startForwardProxy } from './forward-setup.js'

t.test('a CONNECT abandoned during its connect gives its tunnel slot back', async (t) => {
  const echo = createServer((s) => s.pipe(s))
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
  t.teardown(() => echo.close())
  const port = (echo.address() as { port: number }).port
  let lookups = 0
  // 'slow.test' never resolves (a DNS server that does not answer); nothing else is looked up.
  const resolver = ((_host: string, _opts: unknown, _cb: unknown) => { lookups++ }) as unknown as Resolver
  const proxy = await startForwardProxy(t, `  clients: [127.0.0.1]
  max_tunnels: 1
  connect_ports: [443, ${port}]
  allow: [{ host: slow.test }, { cidr: 127.0.0.1/32 }]`, { resolver })
  const p = new URL(proxy.urls[1])
  // CONNECT slow.test:443, then reset the connection (RST) while the proxy is still resolving.
  await new Promise<void>((resolve) => {
    const req = httpRequest({ host: p.hostname, port: p.port, method: 'CONNECT', path: 'slow.test:443', headers: { host: 'slow.test:443' }, agent: false })
    req.on('error', () => resolve())
    req.on('socket', (s) => {
      const deadline = Date.now() + 5000
      const poll = (): void => {
        if (lookups > 0 || Date.now() > deadline) { s.resetAndDestroy(); resolve(); return }
        setTimeout(poll, 5)
      }
      poll()
    })
    req.end()
  })
  t.equal(lookups, 1, 'the proxy was resolving when the client left')
  // Poll: the slot should come back once the server sees the close.
  let status = 0
  const deadline = Date.now() + 4000
  while (Date.now() < deadline) {
    const c = await connectVia(proxy.urls[1], `127.0.0.1:${port}`)
    status = c.status
    c.socket.destroy()
    if (status === 200) break
    await new Promise((r) => setTimeout(r, 50))
  }
  t.equal(status, 200, 'the only tunnel slot is free again')
})
