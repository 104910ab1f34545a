import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { readFileSync } from 'node:fs'
import { isIPv6 } from 'node:net'
import { performance } from 'node:perf_hooks'
import { pino, type Logger } from 'pino'
import { Registry } from 'prom-client'
import { createSocketMetrics } from './socket-metrics.js'
import { transformMessage, type TransformMode } from './upper.js'

/** Largest UDP payload over IPv4: 65,535 - 8 (UDP header) - 20 (IP header). RFC 768, RFC 791. */
export const UDP_MAX_PAYLOAD = 65507

/** Sent instead of an answer that would break the size caps (kept short: it must fit the cap too). */
export const REPLY_TOO_LARGE = Buffer.from('ERROR reply too large')

export interface RateLimitOptions {
  /** Sustained datagrams per second per source IP. */
  ratePerSecond: number
  /** Datagrams a quiet source may send at once. */
  burst: number
  /** Sources tracked at once; the least recently seen is forgotten beyond this. */
  maxSources: number
}

export const DEFAULT_RATE_LIMIT: RateLimitOptions = { ratePerSecond: 1000, burst: 200, maxSources: 10000 }

interface Bucket { tokens: number; at: number }

/**
 * A token bucket per source IP. The map is an LRU bounded by maxSources so a flood of spoofed
 * sources costs bounded memory; a forgotten source simply starts again with a full bucket.
 */
export class SourceRateLimiter {
  private readonly buckets = new Map<string, Bucket>()

  constructor(readonly opts: RateLimitOptions, private readonly now: () => number = () => performance.now()) {}

  get size(): number {
    return this.buckets.size
  }

  allow(source: string): boolean {
    const t = this.now()
    let b = this.buckets.get(source)
    if (b === undefined) {
      if (this.buckets.size >= this.opts.maxSources) {
        const oldest = this.buckets.keys().next()
        if (oldest.done !== true) this.buckets.delete(oldest.value)
      }
      b = { tokens: this.opts.burst, at: t }
    } else {
      this.buckets.delete(source) // re-inserted below: Map order is then least recently seen first
      b.tokens = Math.min(this.opts.burst, b.tokens + ((t - b.at) / 1000) * this.opts.ratePerSecond)
      b.at = t
    }
    this.buckets.set(source, b)
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }
}

export interface UdpServerOptions {
  /** Default 12000 (the lab's port); 0 picks a free port. */
  port?: number
  /** Default '0.0.0.0'; an IPv6 address such as '::' makes a udp6 socket (dual-stack where the OS allows). */
  host?: string
  mode?: TransformMode
  /**
   * Never answer with more than this many times the request's bytes (default 2), so the server
   * cannot be used to amplify a flood towards a spoofed source address.
   */
  maxReplyFactor?: number
  /** Per-source token bucket; false turns it off. */
  rateLimit?: Partial<RateLimitOptions> | false
  /**
   * The kernel's receive buffer for the socket (SO_RCVBUF), in bytes; default: the system's
   * (net.core.rmem_default on Linux). Datagrams that arrive while it is full are dropped by the
   * kernel before the server sees them, so a flood needs a bigger one. Linux caps the request at
   * net.core.rmem_max and reports twice what it keeps (its bookkeeping overhead).
   */
  recvBufferSize?: number
  registry?: Registry
  logger?: Logger
  /** Clock for the rate limiter, in milliseconds (tests pass a fake one). */
  now?: () => number
}

export interface UdpServer {
  port: number
  address: string
  /** The receive buffer the kernel reports for the socket (getsockopt SO_RCVBUF), in bytes. */
  recvBufferSize: number
  registry: Registry
  close(): Promise<void>
}

/** The lab's UDP server: every datagram is answered with its transformed text, within the caps. */
export async function startUdpServer(opts: UdpServerOptions = {}): Promise<UdpServer> {
  const host = opts.host ?? '0.0.0.0'
  const mode = opts.mode ?? 'upper'
  const factor = opts.maxReplyFactor ?? 2
  const registry = opts.registry ?? new Registry()
  const log = opts.logger ?? pino({ level: 'silent' })
  const metrics = createSocketMetrics(registry)
  const limiter = opts.rateLimit === false ? undefined : new SourceRateLimiter({ ...DEFAULT_RATE_LIMIT, ...opts.rateLimit }, opts.now)
  const server = { server: 'udp' } as const
  for (const outcome of ['answered', 'rate_limited', 'reply_too_large']) metrics.messages.inc({ ...server, outcome }, 0)
  for (const direction of ['in', 'out']) metrics.bytes.inc({ ...server, direction }, 0)

  const socket: Socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' })

  const send = (payload: Buffer, to: RemoteInfo): void => {
    socket.send(payload, to.port, to.address, (err) => {
      if (err !== null && err !== undefined) {
        metrics.errors.inc({ ...server, kind: 'send' })
        log.warn({ err, to: `${to.address}:${to.port}` }, 'udp send failed')
        return
      }
      metrics.bytes.inc({ ...server, direction: 'out' }, payload.length)
    })
  }

  socket.on('message', (msg, from) => {
    metrics.bytes.inc({ ...server, direction: 'in' }, msg.length)
    if (limiter !== undefined && !limiter.allow(from.address)) {
      metrics.messages.inc({ ...server, outcome: 'rate_limited' })
      return
    }
    const reply = transformMessage(msg, mode)
    const budget = Math.min(UDP_MAX_PAYLOAD, Math.floor(msg.length * factor))
    if (reply.length > budget) {
      metrics.messages.inc({ ...server, outcome: 'reply_too_large' })
      log.debug({ from: `${from.address}:${from.port}`, request: msg.length, reply: reply.length, budget }, 'udp reply too large')
      // The error itself obeys the amplification cap: a tiny request gets no answer at all.
      if (REPLY_TOO_LARGE.length <= budget) send(REPLY_TOO_LARGE, from)
      return
    }
    metrics.messages.inc({ ...server, outcome: 'answered' })
    send(reply, from)
  })

  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(opts.port ?? 12000, host, () => {
      socket.off('error', reject)
      resolve()
    })
  })
  // After bind, an error (e.g. ICMP feedback on some platforms) must not kill the server.
  socket.on('error', (err) => {
    metrics.errors.inc({ ...server, kind: 'socket' })
    log.warn({ err }, 'udp socket error')
  })
  const recvBufferSize = applyRecvBufferSize(socket, opts.recvBufferSize, log)
  const bound = socket.address()
  log.info({ address: bound.address, port: bound.port, mode, maxReplyFactor: factor, rateLimit: limiter?.opts ?? false, recvBufferSize, recvBufferRequested: opts.recvBufferSize ?? 'system default' }, 'udp server listening')

  let closed: Promise<void> | undefined
  return {
    port: bound.port,
    address: bound.address,
    recvBufferSize,
    registry,
    close: () => (closed ??= new Promise<void>((resolve) => socket.close(() => resolve())))
  }
}

/** Linux's ceiling for SO_RCVBUF without privileges; undefined elsewhere. */
function rmemMax(): number | undefined {
  try {
    const n = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8').trim())
    return Number.isSafeInteger(n) && n > 0 ? n : undefined
  } catch {
    return undefined
  }
}

/**
 * Sets SO_RCVBUF when asked and returns what the kernel reports. A request the kernel cuts down
 * is logged as a warning saying how to raise the ceiling; a refusal fails the start (the caller
 * asked for it: running with a different buffer silently would hide the mistake).
 */
function applyRecvBufferSize(socket: Socket, requested: number | undefined, log: Logger): number {
  if (requested !== undefined) {
    try {
      socket.setRecvBufferSize(requested)
    } catch (err) {
      socket.close()
      throw new Error(`cannot set the UDP receive buffer to ${requested} bytes: ${(err as Error).message}`, { cause: err })
    }
  }
  const effective = socket.getRecvBufferSize()
  if (requested === undefined) return effective
  const ceiling = rmemMax()
  // Linux keeps min(requested, rmem_max) and reports twice that; other systems report what they keep.
  if ((ceiling !== undefined && requested > ceiling) || effective < requested) {
    log.warn({ requested, effective, rmemMax: ceiling }, `udp receive buffer capped by the kernel: asked for ${requested} bytes, got ${effective}` +
      (ceiling !== undefined ? ` (net.core.rmem_max is ${ceiling}; raise it with sysctl -w net.core.rmem_max=${requested})` : ''))
  }
  return effective
}
