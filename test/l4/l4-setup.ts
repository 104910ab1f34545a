/** Helpers for the L4 tests (not a test file): a proxy with tcp/udp listeners and the lab servers as members. */
import { createSocket } from 'node:dgram'
import { connect } from 'node:net'
import { startProxy, waitFor, type TestProxy } from '../fixtures/proxy.js'
import type { Teardown } from '../fixtures/sockets.js'
import { metricValue } from '../../src/sockets/socket-metrics.js'
import { startTcpServer, type TcpServer } from '../../src/sockets/tcp-server.js'
import { startUdpServer, type UdpServer } from '../../src/sockets/udp-server.js'

export { waitFor }

export interface L4Proxy {
  proxy: TestProxy
  /** The port of the n-th tcp/udp listener (in `listen` order, http ones not counted). */
  port(n?: number): number
  /** A proxy metric's value (0 when absent). */
  metric(name: string, labels?: Record<string, string>): Promise<number>
}

/** The YAML's first listener should be an http one (the fixture's `url`); every listener binds 127.0.0.1 port 0. */
export async function startL4(t: Teardown, yaml: string, opts: { configPath?: string } = {}): Promise<L4Proxy> {
  const proxy = await startProxy(yaml, opts)
  t.teardown(() => proxy.close())
  return {
    proxy,
    port: (n = 0) => proxy.app.listeners.l4.all[n].port as number,
    metric: (name, labels = {}) => metricValue(proxy.app.registry, name, labels)
  }
}

export async function labTcp(t: Teardown): Promise<TcpServer> {
  const s = await startTcpServer({ port: 0, host: '127.0.0.1', flushMs: 0 })
  t.teardown(() => s.close())
  return s
}

export async function labUdp(t: Teardown): Promise<UdpServer> {
  const s = await startUdpServer({ port: 0, host: '127.0.0.1', rateLimit: false })
  t.teardown(() => s.close())
  return s
}

/** Connections a lab TCP server accepted. */
export const accepted = (s: TcpServer): Promise<number> => metricValue(s.registry, 'switchyard_socket_connections_total', { server: 'tcp', outcome: 'accepted' })
/** Datagrams a lab UDP server answered. */
export const answered = (s: UdpServer): Promise<number> => metricValue(s.registry, 'switchyard_socket_messages_total', { server: 'udp', outcome: 'answered' })

/** One line over a new TCP connection: sends `text\n`, half-closes, resolves with everything read until the close. */
export function tcpExchange(port: number, text: string, opts: { localAddress?: string; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: opts.localAddress, allowHalfOpen: true })
    let out = ''
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no answer to ${JSON.stringify(text)} on port ${port}`)) }, opts.timeoutMs ?? 5000)
    s.setEncoding('utf8')
    s.on('data', (d: string) => { out += d })
    s.on('error', (err) => { clearTimeout(timer); reject(err) })
    s.on('close', () => { clearTimeout(timer); resolve(out) })
    s.on('end', () => s.end())
    s.end(`${text}\n`)
  })
}

/** One datagram from a new socket; resolves with the first reply. */
export function udpExchange(port: number, text: string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4')
    const timer = setTimeout(() => { s.close(); reject(new Error(`no reply to ${JSON.stringify(text)} on port ${port}`)) }, timeoutMs)
    s.on('message', (m) => { clearTimeout(timer); s.close(); resolve(m.toString()) })
    s.send(text, port, '127.0.0.1')
  })
}
