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
   * Open connections allowed from one client address (default 64; 0 turns the cap off), so one
   * host cannot take every slot of maxConnections. IPv4-mapped IPv6 addresses count as IPv4.
   */
  maxPerAddress?: number
  /**
   * After an error line (line too long, idle timeout) the connection is destroyed at most this
   * long later (default 1000): time for the line to reach the client before the close, not
   * longer, whatever the client keeps sending.
   */
  lingerMs?: number
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
  /** Open connections now (accepted ones, including those closing after an error line). */
  readonly connections: number
  /** Open sockets now: the connections plus refused ones whose error line is still being sent. */
  readonly openSockets: number
  close(): Promise<void>
}

export const DEFAULT_MAX_LINE_BYTES = 65536
export const DEFAULT_MAX_PER_ADDRESS = 64
export const DEFAULT_LINGER_MS = 1000
/**
 * What a closing connection may still read and discard: what a well-behaved client had in flight
 * when our error line reached it. Reading it (instead of closing with unread input, which makes
 * the kernel answer with a reset that can destroy the error line before the client reads it)
 * lets that client see the line and close cleanly; a client that keeps sending past it is cut off.
 */
const LINGER_DISCARD_BYTES = 64 * 1024
const LF = Buffer.from('\n')

interface Settings {
  mode: TransformMode
  maxLineBytes: number
  idleTimeoutMs: number
  flushMs: number
  lingerMs: number
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
  const maxPerAddress = opts.maxPerAddress ?? DEFAULT_MAX_PER_ADDRESS
  const settings: Settings = {
    mode: opts.mode ?? 'upper',
    maxLineBytes: opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
    idleTimeoutMs: opts.idleTimeoutMs ?? 30000,
    flushMs: opts.flushMs ?? 100,
    lingerMs: opts.lingerMs ?? DEFAULT_LINGER_MS,
    metrics,
    log
  }
  for (const outcome of ['answered', 'line_too_long']) metrics.messages.inc({ ...server, outcome }, 0)
  for (const direction of ['in', 'out']) metrics.bytes.inc({ ...server, direction }, 0)
  for (const outcome of ['accepted', 'rejected']) metrics.connections.inc({ ...server, outcome }, 0)
  for (const kind of ['max_connections', 'max_connections_per_address']) metrics.errors.inc({ ...server, kind }, 0)
  metrics.activeConnections.set(server, 0)
  metrics.pausedConnections.set(server, 0)

  const sockets = new Set<Socket>()
  const perAddress = new Map<string, number>()
  let active = 0
  const warnRejected = throttledWarn(log, 10000)
  const refuse = (socket: Socket, kind: 'max_connections' | 'max_connections_per_address', limit: number, address: string): void => {
    const line = kind === 'max_connections'
      ? `ERROR too many connections (limit ${limit})\n`
      : `ERROR too many connections from your address (limit ${limit})\n`
    metrics.connections.inc({ ...server, outcome: 'rejected' })
    metrics.errors.inc({ ...server, kind })
    metrics.bytes.inc({ ...server, direction: 'out' }, Buffer.byteLength(line))
    warnRejected(kind, { remote: address, limit }, kind === 'max_connections' ? 'tcp connection rejected: too many connections' : 'tcp connection rejected: too many connections from one address')
    refuseWith(socket, line, settings.lingerMs)
  }
  // allowHalfOpen: a client that sends its last message and shuts down its sending side
  // (shutdown(SHUT_WR), `nc -N`) still gets the answer before we close ours.
  // pauseOnConnect: nothing is read from a connection until we have decided to serve it, so a
  // refused client's bytes are never read at all.
  const listener = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    socket.on('error', (err: NodeJS.ErrnoException) => {
      metrics.errors.inc({ ...server, kind: errorKind(err) })
      log.debug({ err, remote: socket.remoteAddress }, 'tcp connection error')
    })
    const address = clientAddress(socket)
    if (address === undefined) {
      socket.destroy() // the client is already gone
      return
    }
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    if (active >= maxConnections) return refuse(socket, 'max_connections', maxConnections, address)
    const fromAddress = perAddress.get(address) ?? 0
    if (maxPerAddress > 0 && fromAddress >= maxPerAddress) return refuse(socket, 'max_connections_per_address', maxPerAddress, address)
    active++
    perAddress.set(address, fromAddress + 1)
    metrics.connections.inc({ ...server, outcome: 'accepted' })
    metrics.activeConnections.inc(server)
    socket.once('close', () => {
      active--
      const left = (perAddress.get(address) ?? 1) - 1
      if (left > 0) perAddress.set(address, left)
      else perAddress.delete(address)
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
  log.info({ address: bound.address, port: bound.port, mode: settings.mode, maxLineBytes: settings.maxLineBytes, idleTimeoutMs: settings.idleTimeoutMs, maxConnections, maxPerAddress, flushMs: settings.flushMs, lingerMs: settings.lingerMs }, 'tcp server listening')

  let closed: Promise<void> | undefined
  return {
    port: bound.port,
    address: bound.address,
    registry,
    get connections() { return active },
    get openSockets() { return sockets.size },
    close: () => (closed ??= new Promise<void>((resolve) => {
      listener.close(() => resolve())
      for (const s of sockets) s.destroy()
    }))
  }
}

/** The client's IP address; an IPv4-mapped IPv6 address (dual-stack listener) as plain IPv4. */
function clientAddress(socket: Socket): string | undefined {
  const a = socket.remoteAddress
  return a?.startsWith('::ffff:') === true && a.includes('.') ? a.slice(7) : a
}

/**
 * A refused connection (nothing was read from it): the error line and our FIN, then the socket
 * is destroyed as soon as they are written, so refused clients hold no sockets whatever they
 * send. A client that cannot take even that line (it never reads) is cut off after lingerMs.
 */
function refuseWith(socket: Socket, line: string, lingerMs: number): void {
  const timer = setTimeout(() => socket.destroy(), lingerMs)
  socket.once('close', () => clearTimeout(timer))
  socket.end(line, () => socket.destroy())
}

/** A warn log per kind at most every intervalMs, with the count of the ones not logged. */
function throttledWarn(log: Logger, intervalMs: number): (kind: string, fields: Record<string, unknown>, msg: string) => void {
  const last = new Map<string, { at: number; suppressed: number }>()
  return (kind, fields, msg) => {
    const now = Date.now()
    const seen = last.get(kind)
    if (seen !== undefined && now - seen.at < intervalMs) {
      seen.suppressed++
      return
    }
    log.warn({ ...fields, notLoggedSinceLast: seen?.suppressed ?? 0 }, msg)
    last.set(kind, { at: now, suppressed: 0 })
  }
}

/**
 * One client. Rules:
 * - every '\n'-terminated line is answered, in order; an unterminated rest is answered when the
 *   client half-closes or, after flushMs of quiet, as the lab's client expects;
 * - a line over maxLineBytes gets "ERROR line too long ..." and the connection ends;
 * - no traffic for idleTimeoutMs gets "ERROR idle timeout ..." and the connection ends;
 * - after an error line we stop serving: at most LINGER_DISCARD_BYTES more are read (and
 *   discarded), and the socket is destroyed when the client closes its side, when it sends more
 *   than that, or lingerMs after the error, whichever comes first. Reading on until the client
 *   stops would let a client that never stops cost CPU and a socket for ever;
 * - a flush never splits a UTF-8 sequence: an incomplete character at the end waits for its
 *   remaining bytes;
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
  let lingerTimer: NodeJS.Timeout | undefined
  let discarded = 0

  socket.once('close', () => {
    clearTimeout(flushTimer)
    clearTimeout(lingerTimer)
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
  /** The client half-closed and every line is answered: our FIN after the answers. */
  const finish = (): void => {
    closing = true
    clearTimeout(flushTimer)
    // A client that stops reading its last answers is cut off by the idle timeout ('timeout').
    socket.end()
  }
  /** An error line, then the bounded close described above. */
  const fail = (line: string): void => {
    closing = true
    clearTimeout(flushTimer)
    metrics.bytes.inc({ ...server, direction: 'out' }, Buffer.byteLength(line))
    socket.setTimeout(0)
    lingerTimer = setTimeout(() => socket.destroy(), s.lingerMs)
    socket.end(line)
    if (socket.readableEnded) socket.destroySoon() // the client had already closed its side
    // If we were paused (backpressure), read again: what arrives is discarded, within the budget.
    else socket.resume()
  }
  const tooLong = (): void => {
    metrics.messages.inc({ ...server, outcome: 'line_too_long' })
    log.debug({ remote: socket.remoteAddress, limit: s.maxLineBytes }, 'tcp line too long')
    fail(`ERROR line too long (limit ${s.maxLineBytes} bytes)\n`)
  }
  const flush = (): void => {
    flushTimer = undefined
    if (closing) return
    const rest = splitter.takeFlushable()
    if (rest === 'too-long') tooLong()
    else if (rest !== undefined) answer(rest)
  }

  socket.on('data', (chunk: Buffer) => {
    metrics.bytes.inc({ ...server, direction: 'in' }, chunk.length)
    if (closing) {
      discarded += chunk.length
      if (discarded > LINGER_DISCARD_BYTES) socket.destroy()
      return
    }
    clearTimeout(flushTimer)
    const { lines, tooLong: over } = splitter.push(chunk)
    for (const line of lines) answer(line)
    if (over) tooLong()
    else armFlush()
  })
  socket.on('end', () => {
    // After an error line: the client has closed too, so once our line is written we are done.
    if (closing) return socket.destroySoon()
    clearTimeout(flushTimer)
    const rest = splitter.takePending()
    if (rest === 'too-long') return tooLong()
    if (rest !== undefined) answer(rest)
    finish()
  })
  socket.on('timeout', () => {
    if (closing) return socket.destroy() // half-closed, and our last answers are not being read
    metrics.errors.inc({ ...server, kind: 'idle_timeout' })
    log.debug({ remote: socket.remoteAddress, idleTimeoutMs: s.idleTimeoutMs }, 'tcp idle timeout')
    fail(`ERROR idle timeout (${s.idleTimeoutMs} ms)\n`)
  })
  socket.resume() // the listener accepts connections paused (pauseOnConnect)
}
