/**
 * The benchmark's upstream, run as its own process (`node dist/bench/upstream.js [--port N]`),
 * so its CPU can be measured apart from the load generator and the proxy.
 *
 * Any path ending in /small answers 100 bytes, /big answers 64 KiB (preallocated: the upstream
 * must cost as little as possible, it is the anchor); both are cacheable for 60 s and carry a
 * Content-Length. Under /z/ (the compressing route) the same sizes are text/html prose instead
 * of opaque bytes, compressible about as much as a real page (gzip: about a fifth). The path may carry any prefix, because Switchyard forwards the routed path
 * unchanged (/u/small, /c/big, ...). `?delay=ms` holds the answer back (a slow backend).
 * Prints `{"port":N}` once listening; exits when its parent goes away (stdin closes).
 */
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

const SMALL = Buffer.alloc(100, 's')
const BIG = Buffer.alloc(64 * 1024, 'b')
const HEADERS_SMALL = headers(SMALL.length)
const HEADERS_BIG = headers(BIG.length)
const TEXT_SMALL = prose(SMALL.length)
const TEXT_BIG = prose(BIG.length)
const HEADERS_TEXT_SMALL = headers(SMALL.length, 'text/html; charset=utf-8')
const HEADERS_TEXT_BIG = headers(BIG.length, 'text/html; charset=utf-8')

function headers(length: number, type = 'application/octet-stream'): Record<string, string> {
  return { 'content-type': type, 'content-length': String(length), 'cache-control': 'public, max-age=60' }
}

/** Deterministic prose-like text of `n` bytes (words drawn by a linear congruential generator). */
function prose(n: number): Buffer {
  const words = ['the', 'proxy', 'route', 'pool', 'cache', 'upstream', 'of', 'and', 'a', 'request', 'answer', 'header', 'body', 'stream', 'client', 'to', 'is', 'in', 'switchyard', 'balancer']
  let x = 42
  let s = ''
  while (s.length < n) {
    x = (x * 1103515245 + 12345) & 0x7fffffff
    s += `${words[x % words.length]}${x % 13 === 0 ? `. ${x % 10007}\n` : ' '}`
  }
  return Buffer.from(s.slice(0, n))
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
  const text = path.startsWith('/z/')
  const body = text ? (small ? TEXT_SMALL : TEXT_BIG) : small ? SMALL : BIG
  const head = text ? (small ? HEADERS_TEXT_SMALL : HEADERS_TEXT_BIG) : small ? HEADERS_SMALL : HEADERS_BIG
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
