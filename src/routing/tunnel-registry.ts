import type { Registry } from 'prom-client'
import { createTunnelMetrics, type TunnelCloseReason, type TunnelDirection, type TunnelMetrics } from '../metrics/tunnel-metrics.js'
import type { Tunnel } from './tunnel.js'
import { TunnelSet } from './tunnel-set.js'

/**
 * The open WebSocket tunnels of an app, across its listeners and reloads: the per-route cap
 * (max_tunnels), their metrics, and the graceful stop. A tunnel lives on its own sockets and
 * holds its member, so a reload that removes its route or pool lets it run until it ends.
 */
export class TunnelRegistry extends TunnelSet {
  readonly metrics: TunnelMetrics
  /** Per route name: tunnels open plus handshakes under way (so concurrent upgrades cannot pass the cap). */
  private readonly slots = new Map<string, number>()

  constructor(registry: Registry) {
    super()
    this.metrics = createTunnelMetrics(registry, this)
  }

  /** Takes one of the route's `max` slots (0 = no cap); false when they are all taken. */
  reserve(route: string, max: number): boolean {
    const n = this.slots.get(route) ?? 0
    if (max > 0 && n >= max) return false
    this.slots.set(route, n + 1)
    return true
  }

  /** Gives back a slot reserve() took (the handshake failed, or the tunnel closed). */
  release(route: string): void {
    const n = (this.slots.get(route) ?? 1) - 1
    if (n > 0) this.slots.set(route, n)
    else this.slots.delete(route)
  }

  /** Starts tracking a tunnel that holds a slot; it releases the slot when it closes. */
  opened(t: Tunnel): void {
    this.open.add(t)
    this.metrics.open.get(t.info.route, t.info.pool).inc()
  }

  /** Called by the tunnel once both of its sockets have closed. */
  closed(t: Tunnel, reason: TunnelCloseReason): void {
    if (!this.open.has(t)) return
    const { route, pool } = t.info
    this.release(route)
    this.report(t, (r, d, n) => this.metrics.bytes(r, d, n))
    this.metrics.open.get(route, pool).dec()
    this.metrics.closed.get(route, pool, reason).inc()
    this.forget(t)
  }

  /** Bytes moved since the last scrape, for switchyard_websocket_bytes_total. */
  flushBytes(add: (route: string, direction: TunnelDirection, bytes: number) => void): void {
    for (const t of this.open) this.report(t, add)
  }



  private report(t: Tunnel, add: (route: string, direction: TunnelDirection, bytes: number) => void): void {
    if (t.up > t.reportedUp) add(t.info.route, 'upstream', t.up - t.reportedUp)
    if (t.down > t.reportedDown) add(t.info.route, 'downstream', t.down - t.reportedDown)
    t.reportedUp = t.up
    t.reportedDown = t.down
  }
}
