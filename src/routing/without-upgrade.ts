import { createServer, type IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'

/**
 * Node's HTTP/1 connection handler: the same function http.Server, https.Server and an HTTP/2
 * server with allowHTTP1 run on each new HTTP/1.x connection (taken from a server that is never
 * bound, so no private module is imported). Called directly, no 'connection' or
 * 'secureConnection' listener hears a connection twice (drain sets, TLS handshake metrics, the
 * h2c preface sniffer).
 */
const [http1ConnectionListener] = createServer().listeners('connection') as ((this: object, socket: Duplex) => void)[]

/**
 * Hands the request back to the listener's HTTP parser without its Upgrade: the head is
 * rebuilt from the raw fields (minus Upgrade, and the `upgrade` token of Connection) and put
 * back in front of what followed it (its body, pipelined requests), then Node's HTTP/1
 * connection handler takes the socket again as a new connection. Keep-alive, bodies and every
 * rule of the normal path then apply as for any request. The caller removes its own
 * listeners from the socket first (the parser adds its 'error' listener).
 */
export function serveWithoutUpgrade(server: object, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const raw = req.rawHeaders
  let text = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/${req.httpVersion}\r\n`
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    const lower = name.toLowerCase()
    if (lower === 'upgrade') continue
    let value = raw[i + 1]
    if (lower === 'connection') {
      value = value.split(',').map((t) => t.trim()).filter((t) => t !== '' && t.toLowerCase() !== 'upgrade').join(', ')
      if (value === '') continue
    }
    text += `${name}: ${value}\r\n`
  }
  const again = Buffer.from(`${text}\r\n`, 'latin1')
  socket.unshift(head.length > 0 ? Buffer.concat([again, head]) : again)
  http1ConnectionListener.call(server, socket)
  socket.resume()
}

