import t from 'tap'
import { constants } from 'node:http2'
import { startUpstream } from '../fixtures/upstream.js'
import { startProxy, waitFor } from '../fixtures/proxy.js'
import { h2Connect, h2Request } from '../fixtures/h2.js'

const MB = 1024 * 1024

t.test('HTTP/2: a large answer to a client that reads slowly is paced, not buffered (flow control reaches the member)', async (t) => {
  let sent = 0
  const up = await startUpstream('o', (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(64 * MB) })
    const chunk = Buffer.alloc(64 * 1024, 97)
    const pump = (): void => {
      while (sent < 64 * MB) {
        sent += chunk.length
        if (!res.write(chunk)) { res.once('drain', pump); return }
      }
      res.end()
    }
    pump()
  })
  const proxy = await startProxy(`
listen: { host: 127.0.0.1, port: 0, h2c: true }
pools: { o: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: o }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const s = await h2Connect(proxy.url)
  t.teardown(() => s.close())
  const req = s.request({ ':path': '/big' })
  req.on('error', () => {})
  req.pause()
  // The client reads nothing: the member gets to send at most windows and socket buffers' worth.
  await waitFor(() => sent > 0, 5000, 'the member starts sending')
  let last = -1
  await waitFor(() => { const still = sent === last; last = sent; return still && sent > 0 }, 5000, 'the member is held back')
  await new Promise((r) => setTimeout(r, 200))
  t.ok(sent < 24 * MB, `the member sent ${(sent / MB).toFixed(1)} MiB of 64 while the client read nothing`)
  let got = 0
  req.on('data', (c: Buffer) => { got += c.length })
  req.resume()
  await new Promise<void>((resolve) => req.once('end', () => resolve()))
  t.equal(got, 64 * MB, 'then every byte arrives')
})

t.test('HTTP/2: shutdown sends GOAWAY, lets the stream in flight finish', async (t) => {
  let release: () => void = () => {}
  const gate = new Promise<void>((r) => { release = r })
  const up = await startUpstream('o', (req, res) => {
    if (req.url === '/slow') void gate.then(() => res.end('finished'))
    else res.end('fast')
  })
  const proxy = await startProxy(`
listen: { host: 127.0.0.1, port: 0, h2c: true }
limits: { shutdown_timeout_ms: 5000 }
pools: { o: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: o }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const s = await h2Connect(proxy.url)
  s.on('error', () => {})
  let goaway: number | undefined
  s.on('goaway', (code) => { goaway = code })
  const slow = h2Request(s, '/slow', { timeoutMs: 10000 })
  await waitFor(() => up.hits === 1, 5000, 'the slow request at the member')
  const stopping = proxy.app.shutdown('test')
  await waitFor(() => goaway !== undefined, 5000, 'GOAWAY')
  t.equal(goaway, constants.NGHTTP2_NO_ERROR, 'a graceful GOAWAY')
  release()
  t.equal((await slow).body, 'finished', 'the stream in flight finished')
  await stopping
  t.equal(up.hits, 1)
})
