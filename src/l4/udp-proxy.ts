/**
 * A `protocol: udp` listener: a session per client address (ip:port), each with its own
 * connected socket towards one member, so a member's reply goes back to the client it belongs
 * to. A session ends after session_idle_ms without a datagram either way; at max_sessions a
 * datagram from a new address is dropped. A client is never sent more than max_reply_factor
 * times the bytes it sent in its session (no amplification towards a spoofed source).
 */
import cluster from 'node:cluster'
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import type { Logger } from 'pino'
import type { ListenerUdpConfig } from '../config/schema.js'
import type { Member } from '../upstreams/member.js'
import type { Pool } from '../upstreams/pool.js'
import type { L4ErrorReason, L4Metrics } from './l4-metrics.js'

export interface UdpTarget {
  pool: Pool
  settings: ListenerUdpConfig
}

export interface UdpProxyOptions {
  name: string
  target: () => UdpTarget | undefined
  metrics: L4Metrics
  log: Logger
  /**
   * Bind without sharing the port with other cluster workers (default: when this process is a
   * cluster worker). Shared, the kernel would spread one client's datagrams over workers, each
   * with its own session table. Exclusive, one worker holds the port and the others stand by.
   */
  exclusive?: boolean
  /** How often a standby retries the bind (default 1000 ms). */
  standbyRetryMs?: number
}

/** Datagrams (and bytes) held per session while its upstream socket connects (a DNS lookup for a host name). */
const MAX_PENDING = 16
const MAX_PENDING_BYTES = 65536
/**
 * What a session keeps of a client's datagrams until the member's first reply, to replay them
 * to another member if this one refuses: bounded, so silent members cannot make the proxy hold
 * max_sessions x much (16 KiB x 10000 sessions = 160 MiB at worst).
 */
const MAX_UNANSWERED = 8
const MAX_UNANSWERED_BYTES = 16384

interface Session {
  readonly key: string
  readonly address: string
  readonly port: number
  readonly pool: Pool
  readonly member: Member
  readonly upstream: Socket
  connected: boolean
  pending: Buffer[]
  pendingBytes: number
  /** Bytes the client sent and the bytes sent back to it, in this session. */
  bytesIn: number
  bytesOut: number
  replied: boolean
  /** What the client sent before the member's first reply (replayed to another member if this one refuses). */
  unanswered: Buffer[]
  unansweredBytes: number
  readonly tried: Set<Member>
  lastActive: number
  closed: boolean
  readonly up: { inc(n: number): void }
  readonly down: { inc(n: number): void }
}

export class UdpProxy {
  private socket: Socket | undefined
  private readonly sessions = new Map<string, Session>()
  private sweeper: NodeJS.Timeout | undefined
  private retry: NodeJS.Timeout | undefined
  private draining = false
  private closed = false
  private readonly open

  constructor(private readonly opts: UdpProxyOptions) {
    this.open = opts.metrics.sessionsOpen.labels(opts.name)
    this.open.set(0)
  }

  /** Sessions open now. */
  get sessionCount(): number {
    return this.sessions.size
  }

  /** Whether this process holds the port (a standby worker does not). */
  get bound(): boolean {
    return this.socket !== undefined
  }

  /**
   * Binds host:port. Exclusive in a cluster worker: when another worker holds the port
   * (EADDRINUSE) this one stands by and retries, so the listener moves to another worker when
   * its holder exits; resolves with the port asked for, then.
   */
  async listen(host: string, port: number): Promise<{ address: string; port: number }> {
    const exclusive = this.opts.exclusive ?? cluster.isWorker
    try {
      return await this.bind(host, port, exclusive)
    } catch (err) {
      if (!exclusive || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || port === 0) throw err
      this.opts.log.info({ host, port }, 'udp listener held by another worker; this one stands by')
      this.standBy(host, port)
      return { address: host, port }
    }
  }

  private standBy(host: string, port: number): void {
    if (this.closed || this.draining) return
    this.retry = setTimeout(() => {
      this.retry = undefined
      this.bind(host, port, true).then(
        () => this.opts.log.info({ host, port }, 'udp listener taken over by this worker'),
        () => this.standBy(host, port)
      )
    }, this.opts.standbyRetryMs ?? 1000)
    this.retry.unref()
  }

  private bind(host: string, port: number, exclusive: boolean): Promise<{ address: string; port: number }> {
    return new Promise((resolve, reject) => {
      const s = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' })
      const onError = (err: Error): void => { s.close(); reject(err) }
      s.once('error', onError)
      s.bind({ address: host, port, exclusive }, () => {
        s.off('error', onError)
        if (this.closed || this.draining) { s.close(); reject(new Error('closed')); return }
        s.on('error', (err) => this.opts.log.warn({ err: err.message }, 'udp listener error'))
        s.on('message', (msg, rinfo) => this.onClientDatagram(msg, rinfo))
        this.socket = s
        this.startSweeper()
        const a = s.address()
        resolve({ address: a.address, port: a.port })
      })
    })
  }

  /** Sessions are checked this often for idleness: a quarter of the idle time, 10 ms to 1 s. */
  private startSweeper(): void {
    const idle = this.opts.target()?.settings.session_idle_ms ?? 60000
    const every = Math.min(1000, Math.max(10, Math.floor(idle / 4)))
    this.sweeper = setInterval(() => this.sweep(), every)
    this.sweeper.unref()
  }

  private sweep(): void {
    // Draining: a session quiet for a second has had its answer; it need not wait out the idle time.
    const configured = this.opts.target()?.settings.session_idle_ms ?? 60000
    const idle = this.draining ? Math.min(configured, 1000) : configured
    const now = Date.now()
    for (const s of this.sessions.values()) if (now - s.lastActive >= idle) this.end(s)
  }

  private error(pool: string, member: string, reason: L4ErrorReason): void {
    this.opts.metrics.errors.labels(this.opts.name, pool, member, reason).inc()
  }

  private onClientDatagram(msg: Buffer, rinfo: RemoteInfo): void {
    const key = `${rinfo.address}:${rinfo.port}`
    let s = this.sessions.get(key)
    if (s === undefined) {
      const target = this.opts.target()
      if (target === undefined || this.draining) return
      if (this.sessions.size >= target.settings.max_sessions) {
        this.error(target.pool.name, '', 'limit')
        return
      }
      s = this.openSession(key, rinfo, target, new Set())
      if (s === undefined) return
    }
    s.lastActive = Date.now()
    s.bytesIn += msg.length
    if (!s.replied && s.unanswered.length < MAX_UNANSWERED && s.unansweredBytes + msg.length <= MAX_UNANSWERED_BYTES) {
      s.unanswered.push(msg)
      s.unansweredBytes += msg.length
    }
    this.deliver(s, msg)
  }

  private deliver(s: Session, msg: Buffer): void {
    s.up.inc(msg.length)
    if (s.connected) s.upstream.send(msg)
    else if (s.pending.length < MAX_PENDING && s.pendingBytes + msg.length <= MAX_PENDING_BYTES) {
      s.pending.push(msg)
      s.pendingBytes += msg.length
    }
  }

  /**
   * A member that refused a session before answering (ICMP port unreachable): the client's
   * datagrams so far go to another member not tried yet, in a new session for the same client.
   */
  private failOver(s: Session): void {
    const target = this.opts.target()
    if (s.replied || target === undefined || target.pool !== s.pool || this.draining || this.closed) return
    if (target.pool.eligible(s.tried).length === 0) return
    const next = this.openSession(s.key, { address: s.address, port: s.port }, target, s.tried)
    if (next === undefined) return
    next.bytesIn = s.bytesIn
    next.unanswered = s.unanswered
    next.unansweredBytes = s.unansweredBytes
    for (const m of s.unanswered) this.deliver(next, m)
  }

  private openSession(key: string, rinfo: Pick<RemoteInfo, 'address' | 'port'>, target: UdpTarget, tried: Set<Member>): Session | undefined {
    const { pool } = target
    const member = pool.pick(pool.eligible(tried), pool.balancerName === 'hash' ? rinfo.address : undefined)
    if (member === undefined) {
      this.error(pool.name, '', 'no_member')
      return undefined
    }
    const upstream = createSocket({ type: isIPv6(member.hostname) ? 'udp6' : 'udp4' })
    const s: Session = {
      key,
      address: rinfo.address,
      port: rinfo.port,
      pool,
      member,
      upstream,
      connected: false,
      pending: [],
      pendingBytes: 0,
      bytesIn: 0,
      bytesOut: 0,
      replied: false,
      unanswered: [],
      unansweredBytes: 0,
      tried,
      lastActive: Date.now(),
      closed: false,
      up: this.opts.metrics.bytes.labels(this.opts.name, pool.name, member.name, 'upstream'),
      down: this.opts.metrics.bytes.labels(this.opts.name, pool.name, member.name, 'downstream')
    }
    tried.add(member)
    this.sessions.set(key, s)
    this.open.inc()
    member.inFlight++
    member.requests++
    this.opts.metrics.sessions.labels(this.opts.name, pool.name, member.name).inc()
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      // ECONNREFUSED: the member's host answered ICMP port unreachable (nothing listens there).
      member.failures++
      pool.recordOutcome(member, true)
      this.error(pool.name, member.name, 'connect_failed')
      this.opts.log.debug({ pool: pool.name, member: member.name, err: err.code ?? err.message }, 'udp session ended: member unreachable')
      const wasOpen = !s.closed
      this.end(s)
      if (wasOpen) this.failOver(s)
    })
    upstream.on('message', (reply) => this.onReply(s, reply, target.settings.max_reply_factor))
    upstream.connect(member.port, member.hostname, () => {
      if (s.closed) return
      s.connected = true
      for (const m of s.pending.splice(0)) upstream.send(m)
      s.pendingBytes = 0
    })
    return s
  }

  private onReply(s: Session, reply: Buffer, factor: number): void {
    if (s.closed || this.socket === undefined) return
    if (!s.replied) {
      s.replied = true
      s.unanswered = []
      s.unansweredBytes = 0
      s.pool.recordOutcome(s.member, false)
    }
    s.lastActive = Date.now()
    if (s.bytesOut + reply.length > s.bytesIn * factor) {
      this.error(s.pool.name, s.member.name, 'amplification')
      return
    }
    s.bytesOut += reply.length
    s.down.inc(reply.length)
    this.socket.send(reply, s.port, s.address)
  }

  private end(s: Session): void {
    if (s.closed) return
    s.closed = true
    this.sessions.delete(s.key)
    this.open.dec()
    s.member.inFlight--
    try { s.upstream.close() } catch { /* already closed */ }
  }

  /**
   * No new sessions; open ones keep relaying until they go idle or the deadline, then the
   * socket closes. Sessions still open then are counted as forced.
   */
  drain(deadlineMs: number): Promise<{ forced: number }> {
    this.draining = true
    clearTimeout(this.retry)
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(timer)
        clearInterval(check)
        const forced = this.sessions.size
        void this.close().then(() => resolve({ forced }))
      }
      const timer = setTimeout(finish, deadlineMs)
      const check = setInterval(() => { if (this.sessions.size === 0) finish() }, 20)
      timer.unref()
      check.unref()
    })
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.retry)
    clearInterval(this.sweeper)
    for (const s of [...this.sessions.values()]) this.end(s)
    const socket = this.socket
    this.socket = undefined
    if (socket !== undefined) await new Promise<void>((resolve) => socket.close(() => resolve()))
  }
}
