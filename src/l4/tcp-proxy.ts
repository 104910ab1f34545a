/**
 * A `protocol: tcp` listener: each client connection is piped to one member of its pool, both
 * ways, with backpressure (stream.pipe pauses the side whose peer is not draining). A connect
 * that fails or times out tries another member (connect_attempts in all) and counts as a
 * failure for outlier ejection; a connect that succeeds counts as a success.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import type { Logger } from 'pino'
import type { ListenerTcpConfig } from '../config/schema.js'
import type { Member } from '../upstreams/member.js'
import type { Pool } from '../upstreams/pool.js'
import type { L4ErrorReason, L4Metrics } from './l4-metrics.js'
import { proxyHeader } from './proxy-protocol.js'

/** What a new connection is balanced with: read per connection, so a reload applies to the next one. */
export interface TcpTarget {
  pool: Pool
  settings: ListenerTcpConfig
}

export interface TcpProxyOptions {
  /** The metrics and log label of the listener. */
  name: string
  target: () => TcpTarget | undefined
  metrics: L4Metrics
  log: Logger
}

interface Tunnel {
  client: Socket
  upstream: Socket | undefined
}

export class TcpProxy {
  readonly server: Server
  private readonly tunnels = new Set<Tunnel>()
  private draining: Promise<{ forced: number }> | undefined
  private readonly open

  constructor(private readonly opts: TcpProxyOptions) {
    // pauseOnConnect: the client's first bytes wait in the kernel until a member is connected.
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (s) => this.accept(s))
    this.server.on('error', (err) => opts.log.error({ err: err.message }, 'tcp listener error'))
    this.open = opts.metrics.connectionsOpen.labels(opts.name)
    this.open.set(0)
  }

  /** Client connections open now (connecting ones included). */
  get connections(): number {
    return this.tunnels.size
  }

  /** Whether it is accepting connections. */
  get bound(): boolean {
    return this.server.listening
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err)
      this.server.once('error', onError)
      this.server.listen({ host, port }, () => {
        this.server.off('error', onError)
        resolve(this.server.address() as AddressInfo)
      })
    })
  }

  /**
   * Stops accepting; open tunnels run until they end or the deadline, then are closed
   * (counted as forced).
   */
  drain(deadlineMs: number): Promise<{ forced: number }> {
    this.draining ??= new Promise((resolve) => {
      if (this.server.listening) this.server.close()
      if (this.tunnels.size === 0) { resolve({ forced: 0 }); return }
      const timer = setTimeout(() => {
        const forced = this.tunnels.size
        for (const t of this.tunnels) this.destroy(t)
        resolve({ forced })
      }, deadlineMs)
      const check = setInterval(() => {
        if (this.tunnels.size > 0) return
        clearTimeout(timer)
        clearInterval(check)
        resolve({ forced: 0 })
      }, 20)
      timer.unref?.()
      check.unref?.()
    })
    return this.draining
  }

  /** Closes the listening socket and every tunnel now. */
  async close(): Promise<void> {
    for (const t of this.tunnels) this.destroy(t)
    if (this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private accept(client: Socket): void {
    const target = this.opts.target()
    const label = (pool: string, member: string, reason: L4ErrorReason): void => { this.opts.metrics.errors.labels(this.opts.name, pool, member, reason).inc() }
    client.on('error', () => { /* reported where the tunnel ends */ })
    if (target === undefined || this.draining !== undefined) {
      client.destroy()
      return
    }
    const cap = target.settings.max_connections
    if (cap > 0 && this.tunnels.size >= cap) {
      label(target.pool.name, '', 'limit')
      client.destroy()
      return
    }
    const tunnel: Tunnel = { client, upstream: undefined }
    this.tunnels.add(tunnel)
    this.open.inc()
    client.once('close', () => {
      this.tunnels.delete(tunnel)
      this.open.dec()
      if (tunnel.upstream === undefined || tunnel.upstream.connecting) tunnel.upstream?.destroy()
    })
    this.dial(tunnel, target, new Set(), 1)
  }

  /** One connect attempt; on failure the next member, up to connect_attempts. */
  private dial(tunnel: Tunnel, target: TcpTarget, tried: Set<Member>, attempt: number): void {
    const { client } = tunnel
    const { pool, settings } = target
    if (client.destroyed) return
    const member = pool.pick(pool.eligible(tried), pool.balancerName === 'hash' ? client.remoteAddress : undefined)
    if (member === undefined) {
      this.opts.metrics.errors.labels(this.opts.name, pool.name, '', 'no_member').inc()
      this.opts.log.warn({ pool: pool.name, tried: [...tried].map((m) => m.name) }, 'tcp connection closed: no member to connect to')
      client.destroy()
      return
    }
    tried.add(member)
    member.inFlight++
    member.requests++
    const upstream = connect({ host: member.hostname, port: member.port, allowHalfOpen: true, noDelay: true })
    tunnel.upstream = upstream
    let connected = false
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      member.inFlight--
    }
    let gaveUp = false
    const failed = (reason: L4ErrorReason, detail: string): void => {
      if (gaveUp) return
      gaveUp = true
      upstream.destroy()
      release()
      member.failures++
      pool.recordOutcome(member, true)
      this.opts.metrics.errors.labels(this.opts.name, pool.name, member.name, reason).inc()
      if (client.destroyed) return
      if (attempt < settings.connect_attempts) {
        this.opts.log.debug({ pool: pool.name, member: member.name, detail }, 'tcp connect failed; trying another member')
        this.dial(tunnel, target, tried, attempt + 1)
      } else {
        this.opts.log.warn({ pool: pool.name, member: member.name, detail, attempts: attempt }, 'tcp connection closed: every connect attempt failed')
        client.destroy()
      }
    }
    const timer = setTimeout(() => failed('connect_timeout', 'timeout'), settings.connect_timeout_ms)
    upstream.once('error', (err: NodeJS.ErrnoException) => {
      if (connected) return
      clearTimeout(timer)
      failed('connect_failed', err.code ?? err.message)
    })
    upstream.once('close', () => { clearTimeout(timer); release() })
    upstream.once('connect', () => {
      clearTimeout(timer)
      if (client.destroyed) { upstream.destroy(); return }
      connected = true
      pool.recordOutcome(member, false)
      this.opts.metrics.connections.labels(this.opts.name, pool.name, member.name).inc()
      if (settings.proxy_protocol !== 'off') {
        upstream.write(proxyHeader(settings.proxy_protocol, {
          sourceAddress: client.remoteAddress,
          sourcePort: client.remotePort,
          destinationAddress: client.localAddress,
          destinationPort: client.localPort
        }))
      }
      this.pipe(tunnel, upstream, pool, member, settings)
    })
  }

  private pipe(tunnel: Tunnel, upstream: Socket, pool: Pool, member: Member, settings: ListenerTcpConfig): void {
    const { client } = tunnel
    const up = this.opts.metrics.bytes.labels(this.opts.name, pool.name, member.name, 'upstream')
    const down = this.opts.metrics.bytes.labels(this.opts.name, pool.name, member.name, 'downstream')
    client.on('data', (c: Buffer) => up.inc(c.length))
    upstream.on('data', (c: Buffer) => down.inc(c.length))
    const error = (reason: L4ErrorReason) => (): void => {
      this.opts.metrics.errors.labels(this.opts.name, pool.name, member.name, reason).inc()
      this.destroy(tunnel)
    }
    upstream.on('error', error('upstream_reset'))
    client.on('error', error('client_reset'))
    // A FIN from one side is passed on (pipe ends the other's writable side); the tunnel is
    // over once both sockets have closed.
    client.pipe(upstream)
    upstream.pipe(client)
    upstream.once('close', () => { if (client.writableEnded || client.destroyed) return; client.end() })
    // Both directions refresh a socket's timer, so the client's covers the whole tunnel.
    if (settings.idle_timeout_ms > 0) {
      client.setTimeout(settings.idle_timeout_ms, error('idle_timeout'))
    }
    const closeBoth = (): void => {
      if (client.destroyed && upstream.destroyed) return
      if (client.readableEnded && upstream.readableEnded && client.writableFinished && upstream.writableFinished) this.destroy(tunnel)
    }
    for (const s of [client, upstream]) {
      s.on('end', closeBoth)
      s.on('finish', closeBoth)
    }
    client.once('close', () => upstream.destroy())
  }

  private destroy(t: Tunnel): void {
    t.client.destroy()
    t.upstream?.destroy()
  }
}
