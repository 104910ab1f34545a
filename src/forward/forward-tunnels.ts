import type { Tunnel } from '../routing/tunnel.js'
import { TunnelSet } from '../routing/tunnel-set.js'
import type { ForwardByteSource } from './forward-metrics.js'

/**
 * The open CONNECT tunnels (routing/tunnel.ts relays them: backpressure both ways, half-close,
 * idle timeout): the forward.max_tunnels cap, byte counts for the metrics, and the graceful stop.
 */
export class ForwardTunnels extends TunnelSet implements ForwardByteSource {
  /** Bytes of closed tunnels not yet scraped. */
  private pendingUp = 0
  private pendingDown = 0
  /** Tunnels being opened (connect under way): they count against the cap. */
  private opening = 0

  /** Takes a slot for a tunnel about to open; false when forward.max_tunnels are in use (0 = no cap). */
  reserve(max: number): boolean {
    if (max > 0 && this.open.size + this.opening >= max) return false
    this.opening++
    return true
  }

  /** The connect failed: give the slot back. */
  release(): void {
    this.opening--
  }

  /** The tunnel opened on a reserved slot. */
  add(t: Tunnel): void {
    this.opening--
    this.open.add(t)
  }

  closed(t: Tunnel): void {
    if (!this.forget(t)) return
    this.pendingUp += t.up - t.reportedUp
    this.pendingDown += t.down - t.reportedDown
    t.reportedUp = t.up
    t.reportedDown = t.down
  }

  flushBytes(add: (direction: 'upstream' | 'downstream', bytes: number) => void): void {
    let up = this.pendingUp
    let down = this.pendingDown
    this.pendingUp = 0
    this.pendingDown = 0
    for (const t of this.open) {
      up += t.up - t.reportedUp
      down += t.down - t.reportedDown
      t.reportedUp = t.up
      t.reportedDown = t.down
    }
    add('upstream', up)
    add('downstream', down)
  }
}
