import t from 'tap'
import type { AddressInfo } from 'node:net'
import { createWhoamiServer, MAX_DATA_BYTES } from '../../src/demo/whoami-server.js'
import { fetchText, startProxy } from '../fixtures/proxy.js'
import { sendRaw } from '../fixtures/security.js'
import { openWs, roundTrip } from '../integration/websocket-fixtures.js'

async function startWhoami(t: { teardown(f: () => unknown): void }, name: string): Promise<string> {
  const server = createWhoamiServer(name)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

const CHARSET = '-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

t.test('/ws echoes text and binary messages, directly and through the proxy', async (t) => {
  const url = await startWhoami(t, 'w1')
  const proxy = await startProxy(`
pools: { p: { members: [{ url: "${url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(() => proxy.close())
  for (const base of [url, proxy.url]) {
    const { ws } = await openWs(`${base}/ws`)
    t.teardown(() => ws.terminate())
    const text = await roundTrip(ws, 'hello whoami')
    t.same([text.data.toString(), text.binary], ['hello whoami', false])
    const big = Buffer.alloc(2 * 1024 * 1024, 0xab)
    const bin = await roundTrip(ws, big)
    t.ok(bin.binary && bin.data.equals(big), 'binary comes back as binary, whole')
    ws.close()
  }
  const plain = await fetchText(`${url}/ws`)
  t.equal(plain.status, 426, 'a plain GET /ws is told to upgrade')
  t.equal(plain.headers.upgrade, 'websocket')
  const elsewhere = await openWs(`${url}/not-ws`).then(() => undefined, (e: { status?: number }) => e)
  t.equal(elsewhere?.status, 200, 'an upgrade elsewhere gets the plain whoami answer')
})

t.test('/data?size=N answers N bytes of compressible text (default 1 KiB, at most 10 MiB)', async (t) => {
  const url = await startWhoami(t, 'w1')
  const d = await fetchText(`${url}/data`)
  t.equal(d.status, 200)
  t.equal(d.body.length, 1024, 'default 1 KiB')
  t.equal(d.headers['content-length'], '1024')
  t.match(d.headers['content-type'], /^text\/plain/)
  t.equal(d.body[0], '|')
  t.equal(d.body[1023], '|')
  t.equal(d.body.slice(1, 1 + CHARSET.length * 2), CHARSET + CHARSET, 'the alphabet repeated (traefik/whoami\'s filler)')

  const big = await fetchText(`${url}/data?size=200000`)
  t.equal(big.body.length, 200000)
  let ok = big.body[0] === '|' && big.body[199999] === '|'
  for (let p = 1; ok && p < 199999; p++) ok = big.body[p] === CHARSET[(p - 1) % CHARSET.length]
  t.ok(ok, 'the pattern runs on across 64 KiB chunks')
  t.equal((await fetchText(`${url}/data?size=3&unit=kb`)).body.length, 3072, 'unit=kb')
  t.equal((await fetchText(`${url}/data?size=0`)).body, '')
  t.equal((await fetchText(`${url}/data?size=${MAX_DATA_BYTES}`)).body.length, MAX_DATA_BYTES, 'the cap itself is allowed')
  for (const q of ['size=-1', 'size=abc', `size=${MAX_DATA_BYTES + 1}`, 'size=11&unit=mb', 'size=1&unit=tb']) {
    t.equal((await fetchText(`${url}/data?${q}`)).status, 400, `${q} is refused`)
  }
  const head = await fetchText(`${url}/data?size=5000`, { method: 'HEAD' })
  t.equal(head.headers['content-length'], '5000')
})

t.test('an h2c upgrade sent to whoami itself is answered in HTTP/1.1, as Go\'s server does', async (t) => {
  const url = await startWhoami(t, 'w1')
  const r = await sendRaw(url, `GET /h HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n`, { responses: 1 })
  t.equal(r.status, 200)
  t.match(r.responses[0]?.body.toString(), /^Name: w1\n/)
  t.match(r.responses[0]?.body.toString(), /GET \/h HTTP\/1\.1/)
})
