import { createServer, type Socket } from 'node:net'
import { pino, type Logger } from 'pino'
import { Registry } from 'prom-client'
import { LineSplitter } from './line-splitter.js'
import { createSocketMetrics, errorKind, type SocketMetrics } from './socket-metrics.js'
import { transformMessage, type TransformMode } from './upper.js'

export interface TcpServerOptions {
  /** Default 12000 (the lab's port); 0 picks a free port. */
  port?: number
  /** Default '0.0.0.0'; '::' listens on IPv6 (and IPv4 where the OS is dual-stack). */
  host?: string
  mode?: TransformMode
  /** Longest accepted line, terminator excluded (default 65536). A longer one ends the connection. */
  maxLineBytes?: number
  /** A connection with no traffic either way for this long is closed (default 30000). */
  idleTimeoutMs?: number
  /** Connections beyond this are told so and closed (default 1024). */
  maxConnections?: number
  /**
   * An unterminated line that has been quiet this long is answered as if it had its '\n'
   * (default 100; 0 turns it off). This is what makes the lab's client work: it sends a
   * sentence without a newline and waits for the answer without closing.
   */
  flushMs?: number
  registry?: Registry
  logger?: Logger
}

export interface TcpServer {
  port: number
  address: string
  registry: Registry
  /** Open connections now. */
  readonly connections: number
  close(): Promise<void>
}

export const DEFAULT_MAX_LINE_BYTES = 65536
const LF = Buffer.from('\n')

interface Settings {
  mode: TransformMode
  maxLineBytes: number
  idleTimeoutMs: number
  flushMs: number
  metrics: SocketMetrics
  log: Logger
}

const server = { server: 'tcp' } as const

/**
 * The lab's TCP server, made safe for many clients: newline-framed messages, each answered with
 * its transformed text and '\n'. See serveConnection for the per-connection rules.
 */
export async function startTcpServer(opts: TcpServerOptions = {}): Promise<TcpServer> {
  const registry = opts.registry ?? new Registry()
  const metrics = createSocketMetrics(registry)
  const log = opts.logger ?? pino({ level: 'silent' })
  const maxConnections = opts.maxConnections ?? 1024
  const settings: Settings = {
    mode: opts.mode ?? 'upper',
    maxLineBytes: opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
    idleTimeoutMs: opts.idleTimeoutMs ?? 30000,
    flushMs: opts.flushMs ?? 100,
    metrics,
    log
  }
  for (const outcome of ['answered', 'line_too_long']) metrics.messages.inc({ ...server, outcome }, 0)
  for (const direction of ['in', 'out']) metrics.bytes.inc({ ...server, direction }, 0)
  for (const outcome of ['accepted', 'rejected']) metrics.connections.inc({ ...server, outcome }, 0)
  metrics.activeConnections.set(server, 0)
  metrics.pausedConnections.set(server, 0)

  const sockets = new Set<Socket>()
  let active = 0
  // allowHalfOpen: a client that sends its last message and shuts down its sending side
  // (shutdown(SHUT_WR), `nc -N`) still gets the answer before we close ours.
  const listener = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    if (active >= maxConnections) {
      metrics.connections.inc({ ...server, outcome: 'rejected' })
      metrics.errors.inc({ ...server, kind: 'max_connections' })
      log.warn({ remote: socket.remoteAddress, limit: maxConnections }, 'tcp connection rejected: too many connections')
      socket.on('error', () => { /* the peer went away first: nothing to do */ })
      endWith(socket, `ERROR too many connections (limit ${maxConnections})\n`, settings.idleTimeoutMs)
      return
    }
    active++
    metrics.connections.inc({ ...server, outcome: 'accepted' })
    metrics.activeConnections.inc(server)
    socket.once('close', () => {
      active--
      metrics.activeConnections.dec(server)
    })
    serveConnection(socket, settings)
  })
  listener.on('error', (err) => log.error({ err }, 'tcp server error'))

  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject)
    listener.listen(opts.port ?? 12000, opts.host ?? '0.0.0.0', () => {
      listener.off('error', reject)
      resolve()
    })
  })
  const bound = listener.address()
  if (bound === null || typeof bound === 'string') throw new Error('tcp server: expected an IP address')
  log.info({ address: bound.address, port: bound.port, mode: settings.mode, maxLineBytes: settings.maxLineBytes, idleTimeoutMs: settings.idleTimeoutMs, maxConnections, flushMs: settings.flushMs }, 'tcp server listening')

  let closed: Promise<void> | undefined
  return {
    port: bound.port,
    address: bound.address,
    registry,
    get connections() { return active },
    close: () => (closed ??= new Promise<void>((resolve) => {
      listener.close(() => resolve())
      for (const s of sockets) s.destroy()
    }))
  }
}

/**
 * Sends a last line and our FIN, then keeps reading (and discarding) until the client closes:
 * closing a socket with unread input makes the kernel send RST, which can destroy the error
 * line before the client reads it. A client that never closes is cut off after one more idle
 * period.
 */
function endWith(socket: Socket, line: string, idleTimeoutMs: number): void {
  socket.setTimeout(idleTimeoutMs)
  socket.once('timeout', () => socket.destroy())
  socket.end(line)
  socket.resume()
}

/**
 * One client. Rules:
 * - every '\n'-terminated line is answered, in order; an unterminated rest is answered when the
 *   client half-closes or, after flushMs of quiet, as the lab's client expects;
 * - a line over maxLineBytes gets "ERROR line too long ..." and the connection ends;
 * - no traffic for idleTimeoutMs gets "ERROR idle timeout ..." and the connection ends;
 * - backpressure: when our answers are not being read (write() returns false) we stop reading
 *   the client's requests until 'drain', so a client that sends without reading costs at most
 *   one read chunk of answers plus the socket's buffers, never unbounded memory.
 */
function serveConnection(socket: Socket, s: Settings): void {
  const { metrics, log } = s
  const splitter = new LineSplitter(s.maxLineBytes)
  let closing = false
  let paused = false
  let flushTimer: NodeJS.Timeout | undefined

  socket.on('error', (err: NodeJS.ErrnoException) => {
    metrics.errors.inc({ ...server, kind: errorKind(err) })
    log.debug({ err, remote: socket.remoteAddress }, 'tcp connection error')
  })
  socket.once('close', () => {
    clearTimeout(flushTimer)
    if (paused) metrics.pausedConnections.dec(server)
  })
  // Request/answer traffic of small writes: Nagle's algorithm would only add latency.
  socket.setNoDelay(true)
  socket.setTimeout(s.idleTimeoutMs)

  // The flush timer measures the client's silence; while we are not reading, its silence
  // means nothing, so the timer is off while paused and re-armed on resume.
  const armFlush = (): void => {
    clearTimeout(flushTimer)
    flushTimer = undefined
    if (!closing && !paused && s.flushMs > 0 && splitter.pendingBytes > 0) flushTimer = setTimeout(flush, s.flushMs)
  }
  const write = (payload: Buffer): void => {
    metrics.bytes.inc({ ...server, direction: 'out' }, payload.length)
    if (socket.write(payload) || paused) return
    paused = true
    metrics.pausedConnections.inc(server)
    socket.pause()
    socket.once('drain', () => {
      paused = false
      metrics.pausedConnections.dec(server)
      if (closing) return
      socket.resume()
      armFlush()
    })
  }
  const answer = (line: Buffer): void => {
    metrics.messages.inc({ ...server, outcome: 'answered' })
    write(Buffer.concat([transformMessage(line, s.mode), LF]))
  }
  const finish = (line?: string): void => {
    closing = true
    clearTimeout(flushTimer)
    if (line !== undefined) metrics.bytes.inc({ ...server, direction: 'out' }, Buffer.byteLength(line))
    // If we were paused, endWith's resume() discards input from here on.
    endWith(socket, line ?? '', s.idleTimeoutMs)
  }
  const tooLong = (): void => {
    metrics.messages.inc({ ...server, outcome: 'line_too_long' })
    log.debug({ remote: socket.remoteAddress, limit: s.maxLineBytes }, 'tcp line too long')
    finish(`ERROR line too long (limit ${s.maxLineBytes} bytes)\n`)
  }
  const flush = (): void => {
    flushTimer = undefined
    if (closing) return
    const rest = splitter.takePending()
    if (rest === 'too-long') tooLong()
    else if (rest !== undefined) answer(rest)
  }

  socket.on('data', (chunk: Buffer) => {
    metrics.bytes.inc({ ...server, direction: 'in' }, chunk.length)
    if (closing) return
    clearTimeout(flushTimer)
    const { lines, tooLong: over } = splitter.push(chunk)
    for (const line of lines) answer(line)
    if (over) tooLong()
    else armFlush()
  })
  socket.on('end', () => {
    if (closing) return
    clearTimeout(flushTimer)
    const rest = splitter.takePending()
    if (rest === 'too-long') return tooLong()
    if (rest !== undefined) answer(rest)
    finish()
  })
  socket.on('timeout', () => {
    if (closing) return // endWith's own timeout handler destroys the socket
    metrics.errors.inc({ ...server, kind: 'idle_timeout' })
    log.debug({ remote: socket.remoteAddress, idleTimeoutMs: s.idleTimeoutMs }, 'tcp idle timeout')
    finish(`ERROR idle timeout (${s.idleTimeoutMs} ms)\n`)
  })
}
