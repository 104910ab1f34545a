import type { Tunnel } from '../routing/tunnel.js'
import type { ForwardByteSource } from './forward-metrics.js'

/**
 * The open CONNECT tunnels (routing/tunnel.ts relays them: backpressure both ways, half-close,
 * idle timeout): the forward.max_tunnels cap, byte counts for the metrics, and the graceful stop.
 */
export class ForwardTunnels implements ForwardByteSource {
  private readonly open = new Set<Tunnel>()
  private readonly emptied = new Set<() => void>()
  /** Bytes of closed tunnels not yet scraped. */
  private pendingUp = 0
  private pendingDown = 0
  /** Tunnels being opened (connect under way): they count against the cap. */
  private opening = 0

  get size(): number {
    return this.open.size
  }

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
    if (!this.open.delete(t)) return
    this.pendingUp += t.up - t.reportedUp
    this.pendingDown += t.down - t.reportedDown
    t.reportedUp = t.up
    t.reportedDown = t.down
    if (this.open.size === 0) for (const f of [...this.emptied]) f()
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

  /** Resolves once every tunnel ended by itself, or at the deadline, when those left are closed. */
  drain(deadlineMs: number): Promise<{ forced: number }> {
    if (this.open.size === 0) return Promise.resolve({ forced: 0 })
    return new Promise((resolve) => {
      const done = (forced: number): void => {
        clearTimeout(timer)
        this.emptied.delete(onEmpty)
        resolve({ forced })
      }
      const onEmpty = (): void => done(0)
      const timer = setTimeout(() => {
        const forced = this.open.size
        this.closeAll()
        done(forced)
      }, deadlineMs)
      timer.unref()
      this.emptied.add(onEmpty)
    })
  }

  /** Closes every tunnel now, or those of one listener. */
  closeAll(listener?: object): void {
    for (const t of [...this.open]) if (listener === undefined || t.info.listener === listener) t.close('shutdown')
  }
}
