/**
 * Issue 13's "done when", on the shipped upstreams.yaml: its forward listener (127.0.0.1:3128,
 * bound on port 0 here) admits loopback clients and allows only 127.0.0.1 destinations. The demo
 * backends run in-process on free ports (the rule allows 127.0.0.1 on any port): whoami answers,
 * the lab adapter's cacheable /upper is a hit the second time, example.com gets 403 without a
 * DNS lookup, CONNECT 127.0.0.1:22 gets 403.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { startProxy } from '../fixtures/proxy.js'
import { createWhoamiServer } from '../../src/demo/whoami-server.js'
import { startTcpAdapter } from '../../src/sockets/tcp-adapter.js'
import { startTcpServer } from '../../src/sockets/tcp-server.js'
import type { Resolver } from '../../src/forward/safe-lookup.js'
import { connectVia, sample, viaProxy } from './forward-setup.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

t.test('the shipped forward listener serves the demo backends and refuses the rest', async (t) => {
  const whoami = createWhoamiServer('whoami-1')
  await new Promise<void>((resolve) => whoami.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { whoami.closeAllConnections(); whoami.close() })
  const upper = await startTcpServer({ port: 0, host: '127.0.0.1' })
  t.teardown(() => upper.close())
  const adapter = await startTcpAdapter({ port: 0, target: { host: '127.0.0.1', port: upper.port } })
  t.teardown(() => adapter.close())

  const lookups: string[] = []
  const resolver = ((host: string, _o: unknown, cb: (err: Error) => void) => {
    lookups.push(host)
    cb(Object.assign(new Error(`no DNS in this test (${host})`), { code: 'ENOTFOUND' }))
  }) as unknown as Resolver
  const proxy = await startProxy(readFileSync(`${ROOT}upstreams.yaml`, 'utf8'), { forwardResolver: resolver, env: { ...process.env, ADMIN_TOKEN: '' } })
  t.teardown(() => proxy.close())
  const listener = proxy.app.listeners.all.find((l) => l.config.mode === 'forward')
  t.ok(listener, 'the shipped config has a forward listener')
  t.equal(listener?.config.port, 3128)
  t.equal(listener?.config.host, '127.0.0.1')
  const url = listener?.url as string

  const who = await viaProxy(url, `http://127.0.0.1:${(whoami.address() as AddressInfo).port}/`)
  t.equal(who.status, 200)
  t.match(who.body, /^Name: whoami-1/)

  const cacheable = `http://127.0.0.1:${adapter.port}/upper?text=hello`
  const first = await viaProxy(url, cacheable)
  const second = await viaProxy(url, cacheable)
  t.equal(first.body, 'HELLO\n')
  t.equal(first.headers['x-cache'], 'MISS')
  t.equal(second.headers['x-cache'], 'HIT', 'the second fetch is a hit')
  t.equal(sample(await adapter.registry.metrics(), 'switchyard_tcp_adapter_requests_total', 'method="GET",code="200"'), 1, 'the adapter answered once')

  const example = await viaProxy(url, 'http://example.com/')
  t.equal(example.status, 403)
  t.equal(example.body, '403 Forbidden: denied by forward.allow (no rule allows example.com:80)\n')
  t.same(lookups, [], 'refused on the name, without DNS')

  const ssh = await connectVia(url, '127.0.0.1:22')
  t.equal(ssh.status, 403)
  t.match(ssh.body, /denied by forward\.connect_ports/)
})
