import { connect, isIPv6, type Socket } from 'node:net'
import { LineSplitter } from './line-splitter.js'
import { decodeMessage } from './upper.js'

/** How an exchange with a line server failed; callers word their own message from it. */
export type TargetErrorKind = 'refused' | 'overloaded' | 'reset' | 'connect_timeout' | 'timeout' | 'closed' | 'unreachable' | 'protocol' | 'other'

/**
 * The line switchyard's tcp-server sends instead of serving a connection over one of its limits
 * (then it closes). It is not an answer: upper mode can never produce it (it has lower case), and
 * it only counts as a refusal as the first line of a connection.
 */
const REFUSAL = /^ERROR too many connections( from your address)? \(limit \d+\)$/

export class TargetError extends Error {
  constructor(readonly kind: TargetErrorKind, readonly target: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'TargetError'
  }
}

/** 'host:port', with brackets around an IPv6 address as in URLs (RFC 3986 section 3.2.2). */
export function formatTarget(host: string, port: number): string {
  return `${isIPv6(host) ? `[${host}]` : host}:${port}`
}

function classify(err: NodeJS.ErrnoException, target: string): TargetError {
  switch (err.code) {
    case 'ECONNREFUSED': return new TargetError('refused', target, `TCP target ${target} refused the connection`, { cause: err })
    case 'ECONNRESET':
    case 'EPIPE': return new TargetError('reset', target, `TCP target ${target} reset the connection`, { cause: err })
    case 'ETIMEDOUT': return new TargetError('timeout', target, `TCP target ${target} timed out (${err.code})`, { cause: err })
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN': return new TargetError('unreachable', target, `cannot reach TCP target ${target} (${err.code})`, { cause: err })
    default: return new TargetError('other', target, `TCP target ${target}: ${err.message}`, { cause: err })
  }
}

export interface LineConnectionOptions {
  host: string
  port: number
  /** Time allowed for the TCP handshake. */
  connectTimeoutMs: number
  /** Longest answer line accepted (default 1 MiB: three times the server's 64 KiB line limit, with room). */
  maxReplyBytes?: number
}

interface Pending {
  resolve(reply: string): void
  reject(err: TargetError): void
  timer: NodeJS.Timeout
}

/**
 * One TCP connection to a newline server, one request in flight: send a line, get the next
 * line back. Used by the tcp-client program and by the adapter's connection pool. Any surprise
 * (an answer nobody asked for, a close, an error, a timeout) makes the connection dead for good,
 * because after it we can no longer tell which answer belongs to which request.
 */
export class LineConnection {
  /** Why the connection can no longer be used; undefined while it is healthy. */
  dead: TargetError | undefined
  /** Requests answered on this connection (a reused connection may have been closed by the server meanwhile). */
  answered = 0
  /** Called once when the connection becomes dead. */
  onDead: ((err: TargetError) => void) | undefined
  readonly target: string
  private pending: Pending | undefined
  private readonly splitter: LineSplitter
  private readonly closed: Promise<void>

  private constructor(private readonly socket: Socket, target: string, maxReplyBytes: number) {
    this.target = target
    this.splitter = new LineSplitter(maxReplyBytes)
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()))
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', (err: NodeJS.ErrnoException) => this.kill(classify(err, target)))
    socket.on('end', () => this.kill(new TargetError('closed', target, `TCP target ${target} closed the connection`)))
    socket.on('close', () => this.kill(new TargetError('closed', target, `TCP target ${target} closed the connection`)))
  }

  static connect(opts: LineConnectionOptions): Promise<LineConnection> {
    const target = formatTarget(opts.host, opts.port)
    return new Promise((resolve, reject) => {
      const socket = connect({ host: opts.host, port: opts.port })
      const fail = (err: TargetError): void => {
        socket.destroy()
        reject(err)
      }
      const onError = (err: NodeJS.ErrnoException): void => fail(classify(err, target))
      const timer = setTimeout(() => fail(new TargetError('connect_timeout', target, `TCP target ${target} did not accept the connection within ${opts.connectTimeoutMs} ms`)), opts.connectTimeoutMs)
      socket.once('error', onError)
      socket.once('connect', () => {
        clearTimeout(timer)
        socket.off('error', onError)
        resolve(new LineConnection(socket, target, opts.maxReplyBytes ?? 1024 * 1024))
      })
    })
  }

  get busy(): boolean {
    return this.pending !== undefined
  }

  /** Sends one line (it must not contain '\n') and resolves with the answer line. */
  request(text: string, timeoutMs: number): Promise<string> {
    if (this.dead !== undefined) return Promise.reject(this.dead)
    if (this.pending !== undefined) return Promise.reject(new Error('LineConnection: one request at a time'))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.kill(new TargetError('timeout', this.target, `TCP target ${this.target} did not answer within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending = { resolve, reject, timer }
      this.socket.write(`${text}\n`)
    })
  }

  /** Half-closes (we send no more) and resolves once the server has closed its side too. */
  end(): Promise<void> {
    this.socket.end()
    return this.closed
  }

  destroy(): void {
    this.kill(new TargetError('closed', this.target, 'connection closed by us'))
    this.socket.destroy()
  }

  private onData(chunk: Buffer): void {
    const { lines, tooLong } = this.splitter.push(chunk)
    for (const line of lines) {
      const text = decodeMessage(line)
      if (this.answered === 0 && REFUSAL.test(text)) {
        // Busy, not broken: the caller may say so (503) instead of passing the line on as an answer.
        return this.kill(new TargetError('overloaded', this.target, `TCP target ${this.target} refused the connection: ${text}`))
      }
      const p = this.pending
      if (p === undefined) {
        // E.g. the server's "ERROR idle timeout" on a pooled connection: it is closing on us.
        return this.kill(new TargetError('protocol', this.target, `TCP target ${this.target} sent an unexpected line: ${text.slice(0, 100)}`))
      }
      this.pending = undefined
      clearTimeout(p.timer)
      this.answered++
      p.resolve(text)
    }
    if (tooLong) this.kill(new TargetError('protocol', this.target, `TCP target ${this.target} sent an answer longer than ${this.splitter.maxLineBytes} bytes`))
  }

  private kill(err: TargetError): void {
    if (this.dead !== undefined) return
    this.dead = err
    const p = this.pending
    this.pending = undefined
    if (p !== undefined) {
      clearTimeout(p.timer)
      p.reject(err)
    }
    // 'end' is the server's orderly goodbye: let our side finish writing instead of resetting.
    if (err.kind === 'closed' && !this.socket.destroyed) this.socket.end()
    else this.socket.destroy()
    this.onDead?.(err)
  }
}
