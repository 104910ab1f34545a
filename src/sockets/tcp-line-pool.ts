import { LineConnection, TargetError, formatTarget } from './line-connection.js'

export interface TcpLinePoolOptions {
  host: string
  port: number
  /** Most connections open (or opening) at once (default 8). */
  size?: number
  /** A request's whole budget: waiting for a connection, connecting and the answer (default 5000). */
  timeoutMs?: number
  /** Requests allowed to wait when every connection is busy (default 1024); beyond that, PoolFullError. */
  maxQueue?: number
}

/** Every connection is busy and the wait queue is full: the caller should shed load (503). */
export class PoolFullError extends Error {
  constructor(readonly target: string) {
    super(`too many requests waiting for TCP target ${target}`)
    this.name = 'PoolFullError'
  }
}

interface Waiter {
  /** A connection to use, or null: "a slot is free, open your own". */
  grant(conn: LineConnection | null): void
  timer: NodeJS.Timeout
}

/**
 * A small pool of persistent connections to a newline server, one request in flight on each,
 * with a FIFO queue when all are busy. Dead connections (closed, reset, timed out, or the
 * server's idle-timeout goodbye) are dropped and their slot freed for a new one.
 */
export class TcpLinePool {
  readonly target: string
  readonly size: number
  readonly timeoutMs: number
  /** Connections opened over the pool's life (tests count reuse with it). */
  opened = 0
  private readonly maxQueue: number
  private idle: LineConnection[] = []
  private readonly all = new Set<LineConnection>()
  private slots = 0
  private waiters: Waiter[] = []
  private closed = false

  constructor(private readonly opts: TcpLinePoolOptions) {
    this.target = formatTarget(opts.host, opts.port)
    this.size = opts.size ?? 8
    this.timeoutMs = opts.timeoutMs ?? 5000
    this.maxQueue = opts.maxQueue ?? 1024
  }

  /** Connections open or opening now. */
  get connections(): number {
    return this.slots
  }

  get queued(): number {
    return this.waiters.length
  }

  async request(text: string): Promise<string> {
    const started = Date.now()
    const remaining = (): number => Math.max(1, this.timeoutMs - (Date.now() - started))
    for (let attempt = 1; ; attempt++) {
      const conn = await this.acquire(remaining())
      const reused = conn.answered > 0
      try {
        const reply = await conn.request(text, remaining())
        this.release(conn)
        return reply
      } catch (err) {
        conn.destroy()
        // A reused connection may have been closed by the server while it sat idle (its idle
        // timeout) just as we sent: the exchange is idempotent, so one retry on a fresh
        // connection is safe. A timeout is not retried: the budget is spent.
        if (reused && attempt === 1 && err instanceof TargetError && err.kind !== 'timeout' && err.kind !== 'connect_timeout') continue
        throw err
      }
    }
  }

  close(): void {
    this.closed = true
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer)
      w.grant(null)
    }
    for (const c of this.all) c.destroy()
  }

  private async acquire(timeoutMs: number): Promise<LineConnection> {
    if (this.closed) throw new TargetError('closed', this.target, 'the adapter is shutting down')
    const conn = this.idle.pop() // most recently used first: the others can idle out
    if (conn !== undefined) return conn
    if (this.slots < this.size) {
      this.slots++
    } else {
      if (this.waiters.length >= this.maxQueue) throw new PoolFullError(this.target)
      const granted = await this.wait(timeoutMs)
      if (granted !== null) return granted
      if (this.closed) throw new TargetError('closed', this.target, 'the adapter is shutting down')
      // granted a slot: pump() has counted it for us
    }
    try {
      const fresh = await LineConnection.connect({ host: this.opts.host, port: this.opts.port, connectTimeoutMs: timeoutMs })
      this.opened++
      this.all.add(fresh)
      fresh.onDead = () => {
        this.all.delete(fresh)
        this.idle = this.idle.filter((c) => c !== fresh)
        this.slots--
        this.pump()
      }
      return fresh
    } catch (err) {
      this.slots--
      this.pump()
      throw err
    }
  }

  private wait(timeoutMs: number): Promise<LineConnection | null> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        grant: (conn) => {
          clearTimeout(waiter.timer)
          resolve(conn)
        },
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter)
          reject(new TargetError('timeout', this.target, `TCP target ${this.target} did not answer within ${this.timeoutMs} ms (all ${this.size} connections busy)`))
        }, timeoutMs)
      }
      this.waiters.push(waiter)
    })
  }

  private release(conn: LineConnection): void {
    if (conn.dead !== undefined) return // onDead has freed its slot
    if (this.closed) return conn.destroy()
    const next = this.waiters.shift()
    if (next !== undefined) next.grant(conn)
    else this.idle.push(conn)
  }

  /** A slot came free: let the longest waiter open a connection in it. */
  private pump(): void {
    while (this.waiters.length > 0 && this.slots < this.size && !this.closed) {
      this.slots++
      this.waiters.shift()?.grant(null)
    }
  }
}
