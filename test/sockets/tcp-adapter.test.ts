import { connect, createServer, type Socket } from 'node:net'
import t from 'tap'
import { fetchText, waitFor } from '../fixtures/proxy.js'
import { deadPort } from '../fixtures/upstream.js'
import type { Teardown } from '../fixtures/sockets.js'
import { metricValue } from '../../src/sockets/socket-metrics.js'
import { startTcpAdapter, type TcpAdapterOptions } from '../../src/sockets/tcp-adapter.js'
import { startTcpServer, type TcpServerOptions } from '../../src/sockets/tcp-server.js'

async function setup(t: Teardown, serverOpts: TcpServerOptions = {}, adapterOpts: Partial<TcpAdapterOptions> = {}) {
  const server = await startTcpServer({ port: 0, host: '127.0.0.1', ...serverOpts })
  const adapter = await startTcpAdapter({ port: 0, target: { host: '127.0.0.1', port: server.port }, ...adapterOpts })
  t.teardown(async () => { await adapter.close(); await server.close() })
  const accepted = () => metricValue(server.registry, 'switchyard_socket_connections_total', { server: 'tcp', outcome: 'accepted' })
  return { server, adapter, accepted }
}

/** A TCP server that accepts connections and never says a word. */
async function muteServer(t: Teardown): Promise<number> {
  const sockets = new Set<Socket>()
  const mute = createServer((s) => { sockets.add(s); s.on('error', () => {}) })
  await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); mute.close(() => resolve()) }))
  return (mute.address() as { port: number }).port
}

t.test('GET /upper?text= answers through the TCP server, cacheable with an ETag', async (t) => {
  const { adapter } = await setup(t)
  const r = await fetchText(`${adapter.url}/upper?text=${encodeURIComponent('hello straße')}`)
  t.equal(r.status, 200)
  t.equal(r.body, 'HELLO STRASSE\n')
  t.equal(r.headers['content-type'], 'text/plain; charset=utf-8')
  t.equal(r.headers['cache-control'], 'public, max-age=60')
  t.match(r.headers.etag, /^"[\w-]+"$/)
  const again = await fetchText(`${adapter.url}/upper?text=HELLO+STRA%C3%9FE`)
  t.equal(again.headers.etag, r.headers.etag, 'same answer, same ETag')
})

t.test('If-None-Match -> 304 without a body; a different tag -> 200', async (t) => {
  const { adapter } = await setup(t)
  const first = await fetchText(`${adapter.url}/upper?text=cache+me`)
  const etag = String(first.headers.etag)
  const revalidated = await fetchText(`${adapter.url}/upper?text=cache+me`, { headers: { 'if-none-match': `"other", W/${etag}` } })
  t.equal(revalidated.status, 304)
  t.equal(revalidated.body, '')
  t.equal(revalidated.headers.etag, etag)
  t.equal(revalidated.headers['cache-control'], 'public, max-age=60')
  const changed = await fetchText(`${adapter.url}/upper?text=cache+me`, { headers: { 'if-none-match': '"stale"' } })
  t.equal(changed.status, 200)
  t.equal(changed.body, 'CACHE ME\n')
})

t.test('POST /upper: the body is the text, the answer is not cacheable', async (t) => {
  const { adapter } = await setup(t)
  const r = await fetchText(`${adapter.url}/upper`, { method: 'POST', body: 'post me\n' })
  t.equal(r.status, 200)
  t.equal(r.body, 'POST ME\n', 'one trailing newline ends the line')
  t.equal(r.headers['cache-control'], 'no-store')
  t.notOk(r.headers.etag)
  const invalid = await fetchText(`${adapter.url}/upper`, { method: 'POST', body: Buffer.from([0x68, 0xff, 0x69]) })
  t.equal(invalid.body, 'H\uFFFDI\n')
  const twoLines = await fetchText(`${adapter.url}/upper`, { method: 'POST', body: 'one\ntwo' })
  t.equal(twoLines.status, 400)
  t.match(twoLines.body, 'single line')
  const tooBig = await fetchText(`${adapter.url}/upper`, { method: 'POST', body: 'a'.repeat(65537) })
  t.equal(tooBig.status, 413)
  const atLimit = await fetchText(`${adapter.url}/upper`, { method: 'POST', body: 'a'.repeat(65536) })
  t.equal(atLimit.status, 200)
  t.equal(atLimit.body.length, 65537)
})

t.test('sequential requests reuse one pooled TCP connection', async (t) => {
  const { adapter, accepted } = await setup(t)
  for (let i = 0; i < 10; i++) {
    const r = await fetchText(`${adapter.url}/upper?text=n${i}`)
    t.equal(r.body, `N${i}\n`)
  }
  t.equal(await accepted(), 1, 'the target accepted one connection for 10 requests')
  t.equal(adapter.pool.opened, 1)
})

t.test('concurrent requests share a bounded pool; extra ones queue', async (t) => {
  const { adapter, accepted } = await setup(t, {}, { poolSize: 2 })
  const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => fetchText(`${adapter.url}/upper?text=req${i}`)))
  t.same(answers.map((a) => a.body), Array.from({ length: 40 }, (_, i) => `REQ${i}\n`), 'each request got its own answer')
  t.ok((await accepted()) <= 2, 'never more than the pool size')
})

t.test('a pooled connection closed by the target (idle timeout) is replaced', async (t) => {
  const { adapter, accepted } = await setup(t, { idleTimeoutMs: 50 })
  t.equal((await fetchText(`${adapter.url}/upper?text=before`)).body, 'BEFORE\n')
  await waitFor(() => adapter.pool.connections === 0, 5000, 'the target to close the idle connection')
  t.equal((await fetchText(`${adapter.url}/upper?text=after`)).body, 'AFTER\n')
  t.equal(await accepted(), 2)
  t.equal(await metricValue(adapter.registry, 'switchyard_tcp_adapter_target_connections', {}), 1, 'gauge: open now')
  t.equal(await metricValue(adapter.registry, 'switchyard_tcp_adapter_target_connections_opened_total', {}), 2, 'counter: opened over its life')
  await waitFor(() => adapter.pool.connections === 0, 5000, 'the target to close the second one')
  t.equal(await metricValue(adapter.registry, 'switchyard_tcp_adapter_target_connections', {}), 0, 'the gauge goes down')
  t.equal(await metricValue(adapter.registry, 'switchyard_tcp_adapter_target_connections_opened_total', {}), 2, 'the counter does not (read twice, counted once)')
  const types = [...(await adapter.registry.metrics()).matchAll(/^# TYPE (switchyard_tcp_adapter_target_\S+) (\S+)$/gm)].map((m) => `${m[1]} ${m[2]}`)
  t.same(types, ['switchyard_tcp_adapter_target_connections gauge', 'switchyard_tcp_adapter_target_connections_opened_total counter'])
})

t.test('target down -> 502 with a clear body', async (t) => {
  const port = await deadPort()
  const adapter = await startTcpAdapter({ port: 0, target: { host: '127.0.0.1', port } })
  t.teardown(() => adapter.close())
  const r = await fetchText(`${adapter.url}/upper?text=hello`)
  t.equal(r.status, 502)
  t.equal(r.body, `502 Bad Gateway: TCP target 127.0.0.1:${port} refused the connection\n`)
  t.equal(r.headers['cache-control'], 'no-store')
  t.equal(await metricValue(adapter.registry, 'switchyard_tcp_adapter_requests_total', { method: 'GET', code: '502' }), 1)
})

t.test('target at its per-address connection limit -> 503 with Retry-After, never its error line as a 200', async (t) => {
  const { server, adapter } = await setup(t, { maxPerAddress: 1 })
  const holder = connect({ port: server.port, host: '127.0.0.1' }) // takes the one slot 127.0.0.1 may have
  holder.on('error', () => {})
  t.teardown(() => holder.destroy())
  await waitFor(() => server.connections === 1, 5000, 'the slot to be taken')
  const refused = await fetchText(`${adapter.url}/upper?text=a`)
  t.equal(refused.status, 503)
  t.equal(refused.headers['retry-after'], '1')
  t.equal(refused.headers['cache-control'], 'no-store')
  t.equal(refused.body, `503 Service Unavailable: TCP target 127.0.0.1:${server.port} refused the connection: ERROR too many connections from your address (limit 1)\n`)
  holder.destroy()
  await waitFor(() => server.connections === 0, 5000, 'the slot to be freed')
  t.equal((await fetchText(`${adapter.url}/upper?text=a`)).body, 'A\n', 'answered once the slot is free')
})

t.test('target silent -> 504 after the timeout', async (t) => {
  const port = await muteServer(t)
  const adapter = await startTcpAdapter({ port: 0, target: { host: '127.0.0.1', port }, timeoutMs: 150 })
  t.teardown(() => adapter.close())
  const r = await fetchText(`${adapter.url}/upper`, { method: 'POST', body: 'hello' })
  t.equal(r.status, 504)
  t.equal(r.body, `504 Gateway Timeout: TCP target 127.0.0.1:${port} did not answer within 150 ms\n`)
})

t.test('routing: /health, 404, 405 with Allow, 400 without text', async (t) => {
  const { adapter } = await setup(t)
  const health = await fetchText(`${adapter.url}/health`)
  t.equal(health.status, 200)
  t.equal(health.body, 'ok\n')
  t.equal((await fetchText(`${adapter.url}/nope`)).status, 404)
  const put = await fetchText(`${adapter.url}/upper`, { method: 'PUT', body: 'x' })
  t.equal(put.status, 405)
  t.equal(put.headers.allow, 'GET, HEAD, POST')
  const missing = await fetchText(`${adapter.url}/upper`)
  t.equal(missing.status, 400)
  const head = await fetchText(`${adapter.url}/upper?text=hi`, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.body, '')
  t.ok(head.headers.etag)
})
