import type { Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import type { TunnelCloseReason } from '../metrics/tunnel-metrics.js'
import type { Member } from '../upstreams/member.js'

/** What a tunnel is labelled and logged with; fixed when it opens. */
export interface TunnelInfo {
  readonly id: string
  readonly route: string
  readonly pool: string
  /** The member it holds until it closes (also after a reload that removed it). */
  readonly member: Member
  /** The listener that accepted the client: closing that listener closes its tunnels. */
  readonly listener: object
  readonly path: string
  readonly clientIp: string
}

/**
 * An open WebSocket tunnel: the client's socket and the member's, relayed both ways as bytes
 * (frames are end to end: the proxy never parses them, so permessage-deflate and subprotocols
 * pass through). Each direction has backpressure (a side that cannot take more pauses the other),
 * an end on one side ends the other once what is queued has been written (half-close), and a
 * tunnel with no byte either way for the idle timeout is closed. Errors on either socket close
 * both; they never escape.
 */
export class Tunnel {
  /** Bytes client -> member, and member -> client, since the tunnel opened. */
  up = 0
  down = 0
  /** What the byte counter has already been told. */
  reportedUp = 0
  reportedDown = 0
  readonly openedAt = performance.now()
  private reason: TunnelCloseReason | undefined
  private open = 2
  private finished = false

  constructor(
    readonly client: Duplex,
    readonly upstream: Socket,
    readonly info: TunnelInfo,
    private readonly onClosed: (t: Tunnel, reason: TunnelCloseReason) => void
  ) {}

  /** Starts relaying; `idleMs` 0 keeps an idle tunnel open. */
  start(idleMs: number): void {
    const { client, upstream } = this
    // Each side may finish sending before the other (RFC 9293 half-close); the relay ends the
    // other side itself, after what is queued for it.
    ;(client as Duplex & { allowHalfOpen: boolean }).allowHalfOpen = true
    upstream.allowHalfOpen = true
    upstream.setNoDelay(true)
    // Every relayed byte is read from one socket and written to the other, and both refresh a
    // socket's timer: so each socket's timeout is "no byte either way", and the member's still
    // runs after the client's side has closed.
    setIdle(client, idleMs)
    setIdle(upstream, idleMs)
    const idle = (): void => this.close('idle_timeout')
    client.on('timeout', idle)
    upstream.on('timeout', idle)
    client.on('error', () => this.close('client_error'))
    upstream.on('error', () => this.close('upstream_error'))
    this.relay(client, upstream, true)
    this.relay(upstream, client, false)
    client.on('close', () => this.sideClosed(client, upstream, 'client_closed'))
    upstream.on('close', () => this.sideClosed(upstream, client, 'upstream_closed'))
  }

  /** Closes both sides now (idle timeout, shutdown deadline, an error). */
  close(reason: TunnelCloseReason): void {
    this.reason ??= reason
    this.client.destroy()
    this.upstream.destroy()
  }

  private relay(from: Duplex, to: Duplex, upward: boolean): void {
    from.on('data', (chunk: Buffer) => {
      if (upward) this.up += chunk.length
      else this.down += chunk.length
      if (!to.write(chunk)) from.pause()
    })
    to.on('drain', () => from.resume())
    from.on('end', () => {
      this.reason ??= upward ? 'client_closed' : 'upstream_closed'
      to.end()
    })
  }

  private sideClosed(side: Duplex, other: Duplex, reason: TunnelCloseReason): void {
    this.reason ??= reason
    // A side that ended cleanly both ways has had its end relayed, and the other side closes by
    // itself once that is written; a side that was reset takes the other down at once.
    if (!(side.readableEnded && side.writableFinished)) other.destroy()
    if (--this.open > 0 || this.finished) return
    this.finished = true
    this.onClosed(this, this.reason)
  }
}

function setIdle(s: Duplex, ms: number): void {
  const net = s as Partial<Socket>
  if (typeof net.setTimeout === 'function') net.setTimeout(ms)
  if (typeof net.setKeepAlive === 'function') net.setKeepAlive(true, 30000)
}
