/**
 * Issue 13's "done when", on the shipped upstreams.yaml: its forward listener (127.0.0.1:3128,
 * bound on port 0 here) admits loopback clients and allows only the demo backends' HTTP ports on
 * 127.0.0.1. The demo backends run in-process on free ports (the rule's port list is swapped for
 * those, after checking it names exactly the sidecars' HTTP ports): whoami answers, the lab
 * adapter's cacheable /upper is a hit the second time, example.com gets 403 without a DNS lookup,
 * CONNECT 127.0.0.1:22 gets 403, and the admin listener (9901) is refused.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { startProxy } from '../fixtures/proxy.js'
import { parseConfig } from '../../src/config/load.js'
import { ForwardPolicy } from '../../src/forward/forward-policy.js'
import { createWhoamiServer } from '../../src/demo/whoami-server.js'
import { startTcpAdapter } from '../../src/sockets/tcp-adapter.js'
import { startTcpServer } from '../../src/sockets/tcp-server.js'
import type { Resolver } from '../../src/forward/safe-lookup.js'
import { connectVia, sample, viaProxy } from './forward-setup.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const SHIPPED_PORTS = 'ports: [9001, 9002, 9003, 9101, 9102]'

t.test('the shipped forward rule opens the demo backends\' HTTP ports on 127.0.0.1 and nothing else', async (t) => {
  const config = parseConfig(readFileSync(`${ROOT}upstreams.yaml`, 'utf8'), 'upstreams.yaml', { ...process.env, ADMIN_TOKEN: '' })
  // The HTTP demo backends: whoami and the tcp-adapters (the TCP/UDP servers behind them are not for the forward proxy).
  const http = config.sidecars
    .filter((s) => s.args[0] === 'whoami' || s.args[0] === 'tcp-adapter')
    .map((s) => Number(s.args[s.args.indexOf('--port') + 1]))
    .sort((a, b) => a - b)
  t.equal(`ports: [${http.join(', ')}]`, SHIPPED_PORTS, 'the rule names exactly the HTTP sidecars\' ports')
  const policy = new ForwardPolicy(config)
  for (const port of http) t.equal(policy.checkTarget(policy.global, '127.0.0.1', port, false), undefined, `127.0.0.1:${port} is allowed`)
  for (const port of [config.admin.port, 22, 6379, 12001, 8080]) t.ok(policy.checkTarget(policy.global, '127.0.0.1', port, false), `127.0.0.1:${port} is refused`)
})

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
  const shipped = readFileSync(`${ROOT}upstreams.yaml`, 'utf8')
  t.ok(shipped.includes(SHIPPED_PORTS), 'the shipped rule lists the demo ports')
  const whoamiPort = (whoami.address() as AddressInfo).port
  const proxy = await startProxy(shipped.replace(SHIPPED_PORTS, `ports: [${whoamiPort}, ${adapter.port}]`), { forwardResolver: resolver, env: { ...process.env, ADMIN_TOKEN: '' } })
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

  const admin = await viaProxy(url, 'http://127.0.0.1:9901/admin/config')
  t.equal(admin.status, 403, 'the admin listener is not reachable through the forward proxy')
  t.match(admin.body, /denied by forward\.allow/)

  const ssh = await connectVia(url, '127.0.0.1:22')
  t.equal(ssh.status, 403)
  t.match(ssh.body, /denied by forward\.connect_ports/)
})
