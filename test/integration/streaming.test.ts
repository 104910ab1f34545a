import t from 'tap'
import { request } from 'node:http'
import { Readable } from 'node:stream'
import { startUpstream } from '../fixtures/upstream.js'
import { startProxy, HTTP1_ONLY } from '../fixtures/proxy.js'

const TOTAL = 100 * 1024 * 1024
const CHUNK = Buffer.alloc(64 * 1024, 97)

/** A 100 MB body produced on demand, never held in memory. */
function bigBody(): Readable {
  let sent = 0
  return new Readable({
    read() {
      if (sent >= TOTAL) { this.push(null); return }
      sent += CHUNK.length
      this.push(CHUNK)
    }
  })
}

/** Samples RSS while `work` runs and returns the peak growth over the starting value. */
async function peakRssGrowth(work: () => Promise<void>): Promise<number> {
  global.gc?.()
  const base = process.memoryUsage.rss()
  let peak = base
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()) }, 5)
  try { await work() } finally { clearInterval(timer) }
  return peak - base
}

t.test('100 MB up and 100 MB down stream through without buffering', HTTP1_ONLY, async (t) => {
  const up = await startUpstream('u', (req, res) => {
    if (req.method === 'POST') {
      let n = 0
      req.on('data', (c: Buffer) => { n += c.length })
      req.on('end', () => res.end(String(n)))
      return
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) })
    bigBody().pipe(res)
  })
  const proxy = await startProxy(`
limits: { max_body_bytes: 209715200 }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: p }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const port = Number(new URL(proxy.url).port)

  let echoed = ''
  const upGrowth = await peakRssGrowth(() => new Promise<void>((resolve, reject) => {
    const req = request({ port, host: '127.0.0.1', method: 'POST', path: '/upload', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
      res.setEncoding('utf8')
      res.on('data', (d: string) => { echoed += d })
      res.on('end', resolve)
    })
    req.on('error', reject)
    bigBody().pipe(req)
  }))
  t.equal(echoed, String(TOTAL), 'the upstream received every byte')

  let got = 0
  const downGrowth = await peakRssGrowth(() => new Promise<void>((resolve, reject) => {
    request({ port, host: '127.0.0.1', path: '/download' }, (res) => {
      res.on('data', (c: Buffer) => { got += c.length })
      res.on('end', resolve)
    }).on('error', reject).end()
  }))
  t.equal(got, TOTAL, 'the client received every byte')
  // Buffered, the whole 100 MB would be resident at once. Streamed, growth is chunk garbage that
  // V8 collects once external memory passes its 64 MiB soft limit, so 80 MiB separates the two.
  const LIMIT = 80 * 1024 * 1024
  t.ok(upGrowth < LIMIT, `upload peak RSS growth ${(upGrowth / 1048576).toFixed(1)} MiB`)
  t.ok(downGrowth < LIMIT, `download peak RSS growth ${(downGrowth / 1048576).toFixed(1)} MiB`)
})
