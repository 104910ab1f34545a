/**
 * The benchmark's upstream, run as its own process (`node dist/bench/upstream.js [--port N]`),
 * so its CPU can be measured apart from the load generator and the proxy.
 *
 * Any path ending in /small answers 100 bytes, /big answers 64 KiB (preallocated: the upstream
 * must cost as little as possible, it is the anchor); both are cacheable for 60 s and carry a
 * Content-Length. The path may carry any prefix, because Switchyard forwards the routed path
 * unchanged (/u/small, /c/big, ...). `?delay=ms` holds the answer back (a slow backend).
 * Prints `{"port":N}` once listening; exits when its parent goes away (stdin closes).
 */
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

const SMALL = Buffer.alloc(100, 's')
const BIG = Buffer.alloc(64 * 1024, 'b')
const HEADERS_SMALL = headers(SMALL.length)
const HEADERS_BIG = headers(BIG.length)

function headers(length: number): Record<string, string> {
  return { 'content-type': 'application/octet-stream', 'content-length': String(length), 'cache-control': 'public, max-age=60' }
}

function send(res: ServerResponse, body: Buffer, head: Record<string, string>): void {
  res.writeHead(200, head)
  res.end(body)
}

const server = createServer((req, res) => {
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  const path = q < 0 ? url : url.slice(0, q)
  const small = path.endsWith('/small')
  if (!small && !path.endsWith('/big')) {
    res.writeHead(404, { 'content-length': '0' })
    res.end()
    return
  }
  const body = small ? SMALL : BIG
  const head = small ? HEADERS_SMALL : HEADERS_BIG
  const delay = q < 0 ? 0 : Number(new URLSearchParams(url.slice(q + 1)).get('delay') ?? 0)
  if (delay > 0) setTimeout(send, delay, res, body, head)
  else send(res, body, head)
})
// Idle keep-alive connections from the proxy's pool must outlive the gaps between runs.
server.keepAliveTimeout = 60_000

const portArg = process.argv.indexOf('--port')
const port = portArg < 0 ? 0 : Number(process.argv[portArg + 1])
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`)
})

// The harness keeps our stdin open; EOF means it died, so do not outlive it.
process.stdin.resume()
process.stdin.on('end', () => process.exit(0))
process.on('SIGTERM', () => process.exit(0))
