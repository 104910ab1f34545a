/**
 * Everything the admin /metrics serves passes `promtool check metrics` (when promtool is
 * installed) and our own exposition lint (always): a real proxy with every feature that adds
 * metric families (cache, split, TLS listener, h2c listener, WebSocket route, compression,
 * access rules and a rate limit, a reload), with the lab's TCP server and TCP adapter as sidecars whose metrics the supervisor
 * merges in, after traffic through each.
 */
import t from 'tap'
import { fetchText, startProxy, waitFor } from '../fixtures/proxy.js'
import { deadPort, startUpstream } from '../fixtures/upstream.js'
import { h2Request } from '../fixtures/h2.js'
import { closed, openWs, roundTrip, startWsUpstream } from '../integration/websocket-fixtures.js'
import { exposedFamilies, lintExposition } from '../../src/metrics/exposition-lint.js'
import { startTcpAdapter } from '../../src/sockets/tcp-adapter.js'
import { startTcpServer } from '../../src/sockets/tcp-server.js'
import { promtoolCheck, promtoolMissing } from './promtool.js'

const missing = promtoolMissing()
if (missing !== undefined) t.comment(`promtool checks skipped: ${missing}`)
const PROMTOOL = missing === undefined ? {} : { skip: missing }

/** Families each feature of the scraped proxy must have brought (a scrape without them proves little). */
const EXPECTED = [
  'switchyard_build_info', 'switchyard_config_reloads_total', 'switchyard_config_last_reload_success_timestamp_seconds', 'switchyard_config_last_reload_successful',
  'switchyard_requests_total', 'switchyard_request_duration_seconds', 'switchyard_split_assignments_total',
  'switchyard_split_requests_total', 'switchyard_split_request_duration_seconds', 'switchyard_split_exposures_total', 'switchyard_split_variant_rolled_back', 'switchyard_split_variant_weight_ratio',
  'switchyard_cache_lookups_total', 'switchyard_cache_entries', 'switchyard_tls_handshakes_total', 'switchyard_tls_certificate_expiry_timestamp_seconds',
  'switchyard_http2_sessions_total', 'switchyard_websocket_tunnels_total', 'switchyard_websocket_bytes_total', 'switchyard_compression_responses_total',
  'switchyard_access_denials_total', 'switchyard_rate_limited_total',
  'switchyard_sidecar_up', 'switchyard_socket_messages_total',
  'switchyard_tcp_adapter_requests_total', 'switchyard_tcp_adapter_target_connections', 'switchyard_tcp_adapter_target_connections_opened_total'
]

function text(n: number): string {
  let s = ''
  for (let i = 0; s.length < n; i++) s += `line ${i % 89} of a compressible answer\n`
  return s.slice(0, n)
}

t.test('admin /metrics of a proxy using every feature: promtool and the lint find nothing', async (t) => {
  const a = await startUpstream('a', (req, res) => {
    if (req.url?.startsWith('/packed') === true) {
      const body = text(20000)
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length) })
      res.end(body)
      return
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=60' })
    res.end(JSON.stringify({ name: 'a', url: req.url }))
  })
  const b = await startUpstream('b')
  const ws = await startWsUpstream('ws')
  t.teardown(async () => { await ws.close(); await b.close(); await a.close() })
  const serverPort = await deadPort()
  const adapterPort = await deadPort()
  const proxy = await startProxy(`
listen:
  - { name: plain, host: 127.0.0.1, port: 0 }
  - { name: h2c, host: 127.0.0.1, port: 0, h2c: true }
  - { name: secure, host: 127.0.0.1, port: 0, tls: { self_signed: true } }
pools:
  pa: { members: [{ url: "${a.url}" }] }
  pb: { members: [{ url: "${b.url}" }] }
  sockets: { members: [{ url: "${ws.url}" }] }
  upper: { members: [{ url: "http://127.0.0.1:${adapterPort}" }] }
routes:
  - { name: cached, match: { path_prefix: /cached }, pool: pa, cache: { enabled: true } }
  - { name: packed, match: { path_prefix: /packed }, pool: pa, compress: true }
  - { name: chat, match: { path_prefix: /chat }, pool: sockets }
  - { name: upper, match: { path_prefix: /upper }, pool: upper }
  - name: guarded
    match: { path_prefix: /guarded }
    pool: pa
    access:
      - { name: need-key, unless: { headers: { x-key: { present: true } } }, action: deny }
      - { name: hourly, rate_limit: { requests: 1, per: hour } }
  - name: ab
    match: { path_prefix: / }
    split: { name: hero, variants: [{ name: old, pool: pa, weight: 1 }, { name: new, pool: pb, weight: 1 }] }
cache: { store: memory }
sidecars:
  - { name: upper-server, command: switchyard, args: [tcp-server, --host, 127.0.0.1, --port, "${serverPort}"] }
  - { name: upper-adapter, command: switchyard, args: [tcp-adapter, --port, "${adapterPort}", --target, "127.0.0.1:${serverPort}"] }
`, { sidecars: true })
  t.teardown(() => proxy.close())
  const [plain, h2c, secure] = proxy.urls

  // Traffic for every family.
  await waitFor(async () => (await fetchText(`${plain}/upper?text=ready`).catch(() => ({ status: 0 }))).status === 200, 10000, 'the adapter sidecar to answer through the proxy')
  t.equal((await fetchText(`${plain}/upper?text=hello`)).body, 'HELLO\n')
  for (let i = 0; i < 2; i++) t.equal((await fetchText(`${plain}/cached/x`)).status, 200)
  t.equal((await fetchText(`${plain}/packed`, { headers: { 'accept-encoding': 'gzip' } })).headers['content-encoding'], 'gzip')
  t.equal((await fetchText(`${plain}/ab`)).status, 200)
  t.equal((await fetchText(`${plain}/guarded`)).status, 403)
  t.same([(await fetchText(`${plain}/guarded`, { headers: { 'x-key': '1' } })).status, (await fetchText(`${plain}/guarded`, { headers: { 'x-key': '1' } })).status], [200, 429])
  t.equal((await fetchText(`${plain}/nowhere`, { method: 'TRACE' })).status > 0, true)
  t.equal((await h2Request(h2c, '/ab')).status, 200, 'h2c')
  t.equal((await h2Request(secure, '/ab')).status, 200, 'TLS with ALPN h2')
  const { ws: client } = await openWs(`${plain}/chat`)
  t.equal((await roundTrip(client, 'hi')).data.toString(), 'hi')
  client.close()
  await closed(client)
  t.match(await proxy.app.reload(), { ok: false }, 'a reload without a config file fails and is counted')

  const scraped = await fetchText(`${proxy.adminUrl}/metrics`)
  t.equal(scraped.status, 200)
  const body = scraped.body
  const families = exposedFamilies(body)
  for (const name of EXPECTED) t.ok(families.has(name), `${name} is exposed`)
  t.match(body, /^switchyard_tcp_adapter_target_connections\{sidecar="upper-adapter"\} 1$/m, 'the adapter has one connection open now')
  t.match(body, /^switchyard_tcp_adapter_target_connections_opened_total\{sidecar="upper-adapter"\} [1-9]\d*$/m, 'a counter, labelled by the supervisor like every sidecar series')
  t.match(body, /^switchyard_config_reloads_total\{result="failure"\} 1$/m)
  t.match(body, /^switchyard_config_last_reload_successful 0$/m)
  t.match(body, /^switchyard_build_info\{version="\d+\.\d+\.\d+[^"]*",node_version="v\d+\.\d+\.\d+"\} 1$/m)

  t.same(lintExposition(body), [], 'the exposition lint finds nothing')
  t.test('promtool check metrics', PROMTOOL, async (t) => {
    const { code, output } = await promtoolCheck(body)
    t.equal(output, '', 'promtool reports no problem')
    t.equal(code, 0)
  })
})

t.test('a TCP adapter\'s own registry passes promtool and the lint', async (t) => {
  const server = await startTcpServer({ port: 0, host: '127.0.0.1' })
  const adapter = await startTcpAdapter({ port: 0, target: { host: '127.0.0.1', port: server.port } })
  t.teardown(async () => { await adapter.close(); await server.close() })
  t.equal((await fetchText(`${adapter.url}/upper?text=abc`)).body, 'ABC\n')
  const body = await adapter.registry.metrics()
  t.same(lintExposition(body), [])
  t.test('promtool check metrics', PROMTOOL, async (t) => {
    const { code, output } = await promtoolCheck(body)
    t.equal(output, '', 'promtool reports no problem')
    t.equal(code, 0)
  })
})
