import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { hostname } from 'node:os'
import { WebSocketServer } from 'ws'
import { serveWithoutUpgrade } from '../routing/without-upgrade.js'

/** /data answers at most this many bytes (a demo must not be a way to exhaust the proxy). */
export const MAX_DATA_BYTES = 10 * 1024 * 1024
const DEFAULT_DATA_BYTES = 1024
const UNITS: Record<string, number> = { '': 1, b: 1, kb: 1024, mb: 1024 * 1024 }
/** traefik/whoami's filler: '|' first and last, this alphabet repeated in between (compresses well). */
const CHARSET = '-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
const CHUNK = 64 * 1024
// A whole number of alphabets, so every chunk continues the pattern where the last one stopped.
const PATTERN = Buffer.from(CHARSET.repeat(Math.ceil(CHUNK / CHARSET.length) + 1), 'latin1')

/**
 * A tiny demo backend like traefik/whoami: answers every request with its own name and what it
 * received, so a user can see the balancer at work (`curl localhost:8080/`). Also as whoami:
 * - `/ws`: a WebSocket that echoes every message back (text as text, binary as binary);
 * - `/data?size=N[&unit=kb|mb]`: N bytes of compressible text (default 1 KiB, at most 10 MiB);
 * - `/health`: 200 ok.
 */
export function createWhoamiServer(name: string): Server {
  let served = 0
  const answer = (req: IncomingMessage, res: ServerResponse): void => {
    served++
    const url = new URL(req.url ?? '/', 'http://whoami')
    if (url.pathname === '/health') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n')
      return
    }
    if (url.pathname === '/data') {
      req.resume()
      sendData(req, res, url.searchParams, name)
      return
    }
    if (url.pathname === '/ws') {
      // RFC 9110 section 15.5.22: 426 names the protocol to upgrade to.
      req.resume()
      res.writeHead(426, { 'content-type': 'text/plain; charset=utf-8', upgrade: 'websocket', connection: 'Upgrade', 'x-whoami': name }).end('this is a WebSocket echo: connect with Upgrade: websocket\n')
      return
    }
    const lines = [
      `Name: ${name}`,
      `Hostname: ${hostname()}`,
      `Served: ${served}`,
      `${req.method} ${req.url} HTTP/${req.httpVersion}`,
      ...Object.entries(req.headers).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : v}`)
    ]
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'x-whoami': name })
      res.end(lines.join('\n') + '\n')
    })
  }
  const server = createServer(answer)
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 * 1024 })
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const onError = (): void => { socket.destroy() }
    socket.on('error', onError)
    const path = (req.url ?? '/').split('?')[0]
    if (path === '/ws' && /\bwebsocket\b/i.test(req.headers.upgrade ?? '')) {
      served++
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
        ws.on('error', () => ws.terminate())
      })
      return
    }
    // Any other upgrade (h2c, or websocket elsewhere) is answered as if it had no Upgrade
    // (RFC 9110 section 7.8 lets a server ignore it), as Go's net/http behind traefik/whoami does.
    socket.off('error', onError)
    serveWithoutUpgrade(server, req, socket, head)
  })
  server.on('close', () => wss.close())
  return server
}

/** The body of /data: '|', the alphabet repeated, '|' (traefik/whoami's contentReader), streamed with backpressure. */
function sendData(req: IncomingMessage, res: ServerResponse, q: URLSearchParams, name: string): void {
  const sizeText = q.get('size')
  const unit = UNITS[(q.get('unit') ?? '').toLowerCase()]
  const size = sizeText === null ? DEFAULT_DATA_BYTES : /^\d{1,12}$/.test(sizeText) ? Number(sizeText) * (unit ?? 1) : Number.NaN
  if (unit === undefined || !Number.isSafeInteger(size) || size > MAX_DATA_BYTES) {
    res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' }).end(`size: expected a whole number of bytes up to ${MAX_DATA_BYTES} (unit: b, kb or mb)\n`)
    return
  }
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': size, 'cache-control': 'no-store', 'x-whoami': name })
  if (req.method === 'HEAD' || size === 0) {
    res.end()
    return
  }
  let sent = 0
  const pump = (): void => {
    while (sent < size) {
      const n = Math.min(CHUNK, size - sent)
      // Byte p (0 < p < size - 1) is CHARSET[(p - 1) % length].
      const from = (((sent - 1) % CHARSET.length) + CHARSET.length) % CHARSET.length
      let chunk = PATTERN.subarray(from, from + n)
      const first = sent === 0
      const last = sent + n === size
      if (first || last) {
        chunk = Buffer.from(chunk)
        if (first) chunk[0] = 0x7c
        if (last) chunk[n - 1] = 0x7c
      }
      sent += n
      if (!res.write(chunk)) {
        res.once('drain', pump)
        return
      }
    }
    res.end()
  }
  pump()
}
