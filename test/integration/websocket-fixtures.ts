/**
 * Helpers for the WebSocket tests (tap runs only *.test.js): a `ws` echo upstream that records
 * the upgrade requests it accepted, a raw member that answers with exact bytes, a raw client
 * that reads a response head and keeps the socket, and metric reading.
 */
import type { IncomingMessage } from 'node:http'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { WebSocket, WebSocketServer, type ClientOptions, type RawData } from 'ws'
import type { Registry } from 'prom-client'
import { startUpstream, type Handler, type Upstream } from '../fixtures/upstream.js'

export interface WsUpstream {
  readonly name: string
  readonly url: string
  readonly up: Upstream
  /** The upgrade requests accepted, in order. */
  readonly upgrades: IncomingMessage[]
  /** Server-side sockets open now. */
  readonly open: Set<WebSocket>
  close(): Promise<void>
}

/**
 * A real http.Server with a `ws` server on it: every message is echoed (text as text, binary as
 * binary); the message "who" is answered with the upstream's name. Plain requests go to
 * `handler` (startUpstream's JSON echo by default). Subprotocol "chat" is accepted when offered.
 */
export async function startWsUpstream(name: string, handler?: Handler): Promise<WsUpstream> {
  const up = await startUpstream(name, handler)
  const upgrades: IncomingMessage[] = []
  const open = new Set<WebSocket>()
  const wss = new WebSocketServer({ server: up.server, handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false) })
  wss.on('connection', (ws, req) => {
    upgrades.push(req)
    open.add(ws)
    ws.on('close', () => open.delete(ws))
    ws.on('error', () => ws.terminate())
    ws.on('message', (data, isBinary) => {
      if (!isBinary && data.toString() === 'who') ws.send(name)
      else ws.send(data, { binary: isBinary })
    })
  })
  return {
    name,
    url: up.url,
    up,
    upgrades,
    open,
    async close() {
      for (const ws of open) ws.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      await up.close()
    }
  }
}

export interface OpenWs {
  ws: WebSocket
  /** The 101's fields as the client saw them. */
  headers: IncomingMessage['headers']
}

/** Opens a WebSocket; rejects with `status` set when the answer is not a 101. */
export function openWs(url: string, opts: ClientOptions & { protocols?: string[] } = {}): Promise<OpenWs> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws'), opts.protocols ?? [], { handshakeTimeout: 5000, ...opts })
    let headers: IncomingMessage['headers'] = {}
    ws.once('upgrade', (res) => { headers = res.headers })
    ws.once('open', () => resolve({ ws, headers }))
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => reject(Object.assign(new Error(`status ${res.statusCode}`), { status: res.statusCode, headers: res.headers, body })))
      res.on('error', reject)
    })
    ws.once('error', reject)
  })
}

/** Sends one message and resolves with the next one received. */
export function roundTrip(ws: WebSocket, data: string | Buffer): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve, reject) => {
    const onMessage = (d: RawData, binary: boolean): void => {
      ws.off('close', onClose)
      resolve({ data: Buffer.isBuffer(d) ? d : Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d), binary })
    }
    const onClose = (code: number): void => {
      ws.off('message', onMessage)
      reject(new Error(`closed (${code}) before an answer`))
    }
    ws.once('message', onMessage)
    ws.once('close', onClose)
    ws.send(data, { binary: Buffer.isBuffer(data) })
  })
}

/** Resolves when the WebSocket has closed (at once if it already has). */
export function closed(ws: WebSocket): Promise<number> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve(1006)
  return new Promise((resolve) => ws.once('close', (code) => resolve(code)))
}

export interface RawHead {
  socket: Socket
  status: number
  /** The head as text, up to and without the blank line. */
  head: string
  /** Lower-case name -> value of the head's fields (last one wins). */
  fields: Record<string, string>
  /** Bytes after the head that came with it. */
  rest: Buffer
}

/** Sends exact bytes, resolves once a whole response head arrived; the socket stays open. */
export function rawRequest(url: string, bytes: string | Buffer): Promise<RawHead> {
  const { port, hostname } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    const seen = readHead(socket, (head, rest) => {
      const fields: Record<string, string> = {}
      for (const line of head.split('\r\n').slice(1)) {
        const i = line.indexOf(':')
        fields[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
      }
      resolve({ socket, status: Number(head.slice(9, 12)), head, fields, rest })
    })
    socket.once('error', reject)
    socket.once('close', () => reject(new Error(`closed before a response head: ${seen().toString('latin1')}`)))
    socket.write(bytes)
  })
}

/**
 * Reads `socket` until a whole head (up to the blank line) arrived, then pauses it and calls
 * `done` with the head as text and the bytes after it. Returns what was read so far.
 */
function readHead(socket: Socket, done: (head: string, rest: Buffer) => void): () => Buffer {
  let got: Buffer = Buffer.alloc(0)
  const onData = (d: Buffer): void => {
    got = Buffer.concat([got, d])
    const end = got.indexOf('\r\n\r\n')
    if (end < 0) return
    socket.off('data', onData)
    socket.pause()
    done(got.subarray(0, end).toString('latin1'), got.subarray(end + 4))
  }
  socket.on('data', onData)
  return () => got
}

/** Reads from a socket until `n` bytes arrived (counting `first`), or it ends. */
export function readBytes(socket: Socket, n: number, first: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = first
    if (got.length >= n) { resolve(got); return }
    const done = (): void => {
      socket.off('data', onData)
      socket.off('end', done)
      socket.off('error', reject)
      socket.pause()
      resolve(got)
    }
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d])
      if (got.length >= n) done()
    }
    socket.on('data', onData)
    socket.once('end', done)
    socket.once('error', reject)
    socket.resume()
  })
}

/** Resolves when the peer has ended its side (FIN), with what it sent up to then. */
export function readToEnd(socket: Socket, first: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = first
    socket.on('data', (d: Buffer) => { got = Buffer.concat([got, d]) })
    socket.once('end', () => resolve(got))
    socket.once('error', reject)
    socket.resume()
  })
}

/** An upgrade request head (Sec-WebSocket-Key is the RFC 6455 example; nothing checks it but `ws`). */
export function upgradeHead(path: string, host: string, extra: string[] = [], protocol = 'websocket'): string {
  return [
    `GET ${path} HTTP/1.1`,
    `Host: ${host}`,
    'Connection: Upgrade',
    `Upgrade: ${protocol}`,
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    ...extra,
    '', ''
  ].join('\r\n')
}

export interface RawMember {
  readonly url: string
  /** Request heads received, in order. */
  readonly heads: string[]
  readonly sockets: Set<Socket>
  close(): Promise<void>
}

/**
 * A member on node:net: for each connection it reads the request head, then calls `onRequest`
 * with the socket and the bytes that came after the head.
 */
export async function startRawMember(onRequest: (socket: Socket, head: string, rest: Buffer) => void): Promise<RawMember> {
  const heads: string[] = []
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    readHead(socket, (head, rest) => {
      heads.push(head)
      onRequest(socket, head, rest)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    heads,
    sockets,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    })
  }
}

/** A 101 a raw member can send (the Accept value is not checked by raw clients). */
export const RAW_101 = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n'

/** A counter's or gauge's series value, or 0 when the series does not exist yet. */
export async function metricValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = registry.getSingleMetric(name)
  if (m === undefined) return 0
  const got = await m.get()
  const want = Object.entries(labels)
  const v = got.values.find((x) => want.every(([k, val]) => String((x.labels as Record<string, unknown>)[k]) === val))
  return v?.value ?? 0
}
