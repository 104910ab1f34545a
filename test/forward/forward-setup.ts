/** Helpers for the forward proxy tests: requests and CONNECT through a proxy, on real sockets. */
import { request as httpRequest } from 'node:http'
import type { Socket } from 'node:net'
import type { Answer } from '../fixtures/proxy.js'
import { startProxy, type TestProxy } from '../fixtures/proxy.js'
import type { Resolver } from '../../src/forward/safe-lookup.js'

/** One absolute-form request through the proxy at `proxyUrl` (a new connection each time). */
export function viaProxy(proxyUrl: string, target: string, opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Answer> {
  const p = new URL(proxyUrl)
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: p.hostname, port: p.port, method: opts.method ?? 'GET', path: target, headers: { host: target.startsWith('/') ? 'proxy.test' : new URL(target).host, ...opts.headers }, agent: false, timeout: 10000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer for ${target} within 10 s`)))
    req.on('error', reject)
    req.end(opts.body)
  })
}

export interface Connected {
  status: number
  headers: Record<string, string | string[] | undefined>
  /** The open tunnel (status 200), else the closed socket. */
  socket: Socket
  /** The refusal's body (status other than 200). */
  body: string
}

/** CONNECT `authority` through the proxy; resolves with the answer and, for a 200, the tunnel's socket. */
export function connectVia(proxyUrl: string, authority: string, headers: Record<string, string> = {}): Promise<Connected> {
  const p = new URL(proxyUrl)
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: p.hostname, port: p.port, method: 'CONNECT', path: authority, headers: { host: authority, ...headers }, agent: false, timeout: 10000 })
    req.on('connect', (res, socket, head) => {
      if (head.length > 0) socket.unshift(head)
      if (res.statusCode === 200) return resolve({ status: 200, headers: res.headers, socket, body: '' })
      let body = ''
      socket.setEncoding('utf8')
      socket.on('data', (d: string) => { body += d })
      socket.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, socket, body }))
      socket.on('error', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, socket, body }))
    })
    req.on('timeout', () => req.destroy(new Error(`no answer for CONNECT ${authority} within 10 s`)))
    req.on('error', reject)
    req.end()
  })
}

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
}

/** A metric sample's value from a /metrics text (0 when absent). */
export function sample(metrics: string, name: string, labels: string): number {
  const line = metrics.split('\n').find((l) => l.startsWith(`${name}{${labels}}`) || (labels === '' && l.startsWith(`${name} `)))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
}

/** A proxy with a plain listener and a forward one (`forwardUrl`); `forward` is the body of the `forward:` mapping, indented two spaces. Stopped in teardown. */
export async function startForwardProxy(t: { teardown: (fn: () => unknown) => void }, forward: string, opts: { extra?: string; configPath?: string; resolver?: Resolver } = {}): Promise<TestProxy & { forwardUrl: string }> {
  const proxy = await startProxy(`
listen:
  - { port: 0 }
  - { port: 0, mode: forward }
pools: { web: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: [{ name: all, match: {}, pool: web }]
${opts.extra ?? ''}
forward:
${forward}
`, { configPath: opts.configPath, forwardResolver: opts.resolver })
  t.teardown(() => proxy.close())
  return Object.assign(proxy, { forwardUrl: proxy.urls[1] })
}
