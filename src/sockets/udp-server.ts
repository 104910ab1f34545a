import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
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
  registry?: Registry
  logger?: Logger
  /** Clock for the rate limiter, in milliseconds (tests pass a fake one). */
  now?: () => number
}

export interface UdpServer {
  port: number
  address: string
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
  const bound = socket.address()
  log.info({ address: bound.address, port: bound.port, mode, maxReplyFactor: factor, rateLimit: limiter?.opts ?? false }, 'udp server listening')

  let closed: Promise<void> | undefined
  return {
    port: bound.port,
    address: bound.address,
    registry,
    close: () => (closed ??= new Promise<void>((resolve) => socket.close(() => resolve())))
  }
}
