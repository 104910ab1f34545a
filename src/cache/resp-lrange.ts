/**
 * A minimal Redis client for the cache's hot path only: LRANGE <key> 0 -1 over one plain TCP
 * connection (redis:// URLs; rediss://, Sentinel and Cluster stay on ioredis).
 *
 * Why not ioredis here: profiled on a 64 KiB hit (see the README's Performance section), most of
 * a Redis hit's CPU was per-command work around the bytes: one socket write per command, a
 * Command object with its own timeout timer, socket reads of a large reply through a growing
 * parser pool. This client
 *  - writes every command issued in one event-loop turn with one write (setImmediate flush);
 *  - reads into one reusable buffer (net `onread`) and copies each reply element once, into an
 *    exact-size Buffer (nothing returned keeps a read buffer alive);
 *  - bounds every command with one sweep timer instead of a timer per command: when the oldest
 *    pending command is older than `timeoutMs` and nothing arrives for another sweep, the
 *    connection is destroyed, every pending command fails, and it reconnects with capped,
 *    jittered backoff.
 * It speaks only what it needs of RESP2: AUTH and SELECT at connect, then LRANGE, whose reply is
 * an array of bulk strings (or an error). While not connected, lrange() rejects at once, like
 * the store's ioredis connection (no offline queue), so a request never waits on a broken Redis.
 */
import { connect, type Socket } from 'node:net'
import { reconnectDelay } from './redis-connection.js'

export interface RespLrangeOptions {
  host: string
  port: number
  username?: string
  password?: string
  db?: number
  /** Bound on each command (cache.redis.timeout_ms). */
  timeoutMs: number
  maxReconnectDelayMs: number
}

interface Pending {
  readonly resolve: (v: Buffer[] | string) => void
  readonly reject: (e: Error) => void
  readonly at: number
}

const READ_BUFFER_BYTES = 256 * 1024
const CRLF = 0x0a

/** Parses the plain redis://[user:password@]host[:port][/db] form, or undefined for any other URL. */
export function plainRedisTarget(url: string): Omit<RespLrangeOptions, 'timeoutMs' | 'maxReconnectDelayMs'> | undefined {
  if (!/^redis:\/\//i.test(url)) return undefined
  let u: URL
  try { u = new URL(url) } catch { return undefined }
  const db = u.pathname.replace(/^\//, '')
  if (db !== '' && !/^\d+$/.test(db)) return undefined
  if (u.search !== '') return undefined
  return {
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: u.port === '' ? 6379 : Number(u.port),
    ...(u.username === '' ? {} : { username: decodeURIComponent(u.username) }),
    ...(u.password === '' ? {} : { password: decodeURIComponent(u.password) }),
    ...(db === '' ? {} : { db: Number(db) })
  }
}

export class RespLrange {
  readonly #opts: RespLrangeOptions
  readonly #readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES)
  readonly #sweep: NodeJS.Timeout
  #socket: Socket | undefined
  #ready = false
  #closed = false
  /** The oldest command seen overdue by the last sweep with nothing read since (see #checkTimeouts). */
  #suspect: Pending | undefined
  #attempt = 0
  #reconnect: NodeJS.Timeout | undefined
  /** FIFO of commands sent and not answered; `#head` is the oldest. */
  #pending: (Pending | undefined)[] = []
  #head = 0
  #out: string[] = []
  #flushScheduled = false
  // Parser state: the reply being assembled.
  #line: Buffer | undefined
  #elements: Buffer[] | undefined
  #remaining = 0
  #bulk: Buffer | undefined
  #bulkGot = 0
  #skipCrlf = 0

  constructor(opts: RespLrangeOptions) {
    this.#opts = opts
    this.#sweep = setInterval(() => this.#checkTimeouts(), Math.max(10, Math.floor(opts.timeoutMs / 4)))
    this.#sweep.unref()
    this.#connect()
  }

  /** Whether commands can be sent now. */
  get ready(): boolean {
    return this.#ready
  }

  /** The list at `key` (empty when there is none). Rejects on an error reply, a timeout or while disconnected. */
  lrange(key: string): Promise<Buffer[]> {
    if (!this.#ready) return Promise.reject(new Error('redis fast path not connected'))
    return new Promise<Buffer[]>((resolve, reject) => {
      this.#send(['LRANGE', key, '0', '-1'], {
        resolve: (v) => { if (Array.isArray(v)) resolve(v); else reject(new Error(`unexpected reply to LRANGE: ${v}`)) },
        reject,
        at: performance.now()
      })
    })
  }

  close(): void {
    this.#closed = true
    this.#ready = false
    clearInterval(this.#sweep)
    clearTimeout(this.#reconnect)
    this.#socket?.destroy()
    this.#failAll(new Error('closed'))
  }

  #connect(): void {
    if (this.#closed) return
    const socket = connect({
      host: this.#opts.host,
      port: this.#opts.port,
      noDelay: true,
      onread: { buffer: this.#readBuffer, callback: (n: number, buf: Uint8Array) => { this.#feed(buf as Buffer, n); return true } }
    })
    this.#socket = socket
    this.#resetParser()
    socket.setTimeout(Math.max(1000, this.#opts.timeoutMs * 10), () => socket.destroy(new Error('connect timeout')))
    socket.once('connect', () => {
      socket.setTimeout(0)
      this.#handshake()
    })
    socket.on('error', () => { /* 'close' follows; failures surface as rejected commands */ })
    socket.once('close', () => {
      if (this.#socket !== socket) return
      this.#ready = false
      this.#failAll(new Error('redis fast path connection closed'))
      if (this.#closed) return
      this.#reconnect = setTimeout(() => this.#connect(), reconnectDelay(this.#attempt++, this.#opts.maxReconnectDelayMs))
      this.#reconnect.unref()
    })
  }

  /** AUTH and SELECT as configured, then ready (their replies are checked like any other). */
  #handshake(): void {
    const steps: string[][] = []
    if (this.#opts.password !== undefined) steps.push(this.#opts.username === undefined ? ['AUTH', this.#opts.password] : ['AUTH', this.#opts.username, this.#opts.password])
    if (this.#opts.db !== undefined && this.#opts.db !== 0) steps.push(['SELECT', String(this.#opts.db)])
    const socket = this.#socket
    let left = steps.length
    const ok = (): void => {
      if (--left > 0 || this.#socket !== socket) return
      this.#ready = true
      this.#attempt = 0
    }
    if (left === 0) {
      left = 1
      ok()
      return
    }
    // A server without a password answers AUTH with an error ioredis also ignores; any other
    // error reply (wrong password, no such db) will not change by retrying: the fast path gives
    // up and hits go through ioredis, which reports the error.
    const failed = (err: Error): void => {
      if (/no password is set|without any password configured/i.test(err.message)) return ok()
      this.close()
    }
    for (const step of steps) this.#send(step, { resolve: ok, reject: failed, at: performance.now() })
  }

  #send(args: string[], p: Pending): void {
    this.#pending.push(p)
    let cmd = `*${args.length}\r\n`
    for (const a of args) cmd += `$${Buffer.byteLength(a)}\r\n${a}\r\n`
    this.#out.push(cmd)
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    setImmediate(() => {
      this.#flushScheduled = false
      const out = this.#out.join('')
      this.#out = []
      this.#socket?.write(out)
    })
  }

  /**
   * The connection is given up when its oldest command is overdue and nothing was read across
   * two sweeps: a large reply still arriving, or replies waiting in the kernel after the event
   * loop was blocked (timers run before reads), are not a dead server.
   */
  #checkTimeouts(): void {
    const oldest = this.#pending[this.#head]
    if (oldest === undefined || performance.now() - oldest.at <= this.#opts.timeoutMs) {
      this.#suspect = undefined
      return
    }
    if (this.#suspect === oldest) this.#socket?.destroy(new Error('redis fast path command timed out'))
    else this.#suspect = oldest
  }

  #failAll(err: Error): void {
    const pending = this.#pending
    const head = this.#head
    this.#pending = []
    this.#head = 0
    this.#out = []
    for (let i = head; i < pending.length; i++) pending[i]?.reject(err)
  }

  #settle(value: Buffer[] | string | Error): void {
    const p = this.#pending[this.#head]
    this.#pending[this.#head++] = undefined
    if (this.#head > 1024 && this.#head * 2 > this.#pending.length) {
      this.#pending = this.#pending.slice(this.#head)
      this.#head = 0
    }
    if (p === undefined) return
    if (value instanceof Error) p.reject(value)
    else p.resolve(value)
  }

  #resetParser(): void {
    this.#line = undefined
    this.#elements = undefined
    this.#remaining = 0
    this.#bulk = undefined
    this.#bulkGot = 0
    this.#skipCrlf = 0
  }

  /** Consumes `n` bytes of the (reused) read buffer; everything kept is copied out. */
  #feed(buf: Buffer, n: number): void {
    this.#suspect = undefined
    let i = 0
    while (i < n) {
      if (this.#skipCrlf > 0) {
        const take = Math.min(this.#skipCrlf, n - i)
        this.#skipCrlf -= take
        i += take
        if (this.#skipCrlf === 0) this.#element(this.#bulk as Buffer)
        continue
      }
      if (this.#bulk !== undefined) {
        const bulk = this.#bulk
        const take = Math.min(bulk.length - this.#bulkGot, n - i)
        buf.copy(bulk, this.#bulkGot, i, i + take)
        this.#bulkGot += take
        i += take
        if (this.#bulkGot === bulk.length) this.#skipCrlf = 2
        continue
      }
      const end = buf.indexOf(CRLF, i)
      if (end < 0 || end >= n) {
        const part = Buffer.from(buf.subarray(i, n))
        this.#line = this.#line === undefined ? part : Buffer.concat([this.#line, part])
        return
      }
      const piece = buf.subarray(i, end)
      const whole = this.#line === undefined ? piece : Buffer.concat([this.#line, piece])
      this.#line = undefined
      i = end + 1
      // The line without its trailing CR.
      this.#header(whole.toString('latin1', 0, whole.length - 1))
    }
  }

  #header(line: string): void {
    const type = line.charCodeAt(0)
    const rest = line.slice(1)
    if (type === 0x2a) { // '*' array
      const count = Number(rest)
      if (count <= 0) { this.#settle([]); return }
      this.#elements = []
      this.#remaining = count
    } else if (type === 0x24) { // '$' bulk
      const len = Number(rest)
      if (len < 0) { this.#element(undefined); return }
      this.#bulk = Buffer.allocUnsafe(len)
      this.#bulkGot = 0
      if (len === 0) this.#skipCrlf = 2
    } else if (type === 0x2d) { // '-' error
      this.#elements = undefined
      this.#settle(new Error(rest))
    } else { // '+' or ':': a simple reply (AUTH, SELECT)
      this.#settle(rest)
    }
  }

  #element(value: Buffer | undefined): void {
    this.#bulk = undefined
    const elements = this.#elements
    if (elements === undefined) {
      this.#settle(value === undefined ? [] : [value])
      return
    }
    if (value !== undefined) elements.push(value)
    if (--this.#remaining === 0) {
      this.#elements = undefined
      this.#settle(elements)
    }
  }
}
