import { createServer, type Server } from 'node:http'
import { hostname } from 'node:os'

/**
 * A tiny demo backend like traefik/whoami: answers every request with its own name and what it
 * received, so a user can see the balancer at work (`curl localhost:8080/`).
 */
export function createWhoamiServer(name: string): Server {
  let served = 0
  return createServer((req, res) => {
    served++
    if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n')
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
  })
}
