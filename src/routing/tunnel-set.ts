import type { Tunnel } from './tunnel.js'

/**
 * Open tunnels (WebSocket or CONNECT) and their graceful stop: what the WebSocket registry and
 * the forward proxy's CONNECT tunnels share. Subclasses add their caps and metrics.
 */
export class TunnelSet {
  protected readonly open = new Set<Tunnel>()
  private readonly emptied = new Set<() => void>()

  /** Tunnels open now. */
  get size(): number {
    return this.open.size
  }

  /** Stops tracking a closed tunnel; false when it was not tracked. Wakes a drain on the last one. */
  protected forget(t: Tunnel): boolean {
    if (!this.open.delete(t)) return false
    if (this.open.size === 0) for (const f of [...this.emptied]) f()
    return true
  }

  /**
   * The graceful stop: resolves once every tunnel has ended by itself, or at `deadlineMs`
   * (limits.shutdown_timeout_ms), when those left are closed. `forced`: how many were.
   */
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

  /** Closes every tunnel now, or those of one listener (the listener is closing). */
  closeAll(listener?: object): void {
    for (const t of [...this.open]) if (listener === undefined || t.info.listener === listener) t.close('shutdown')
  }
}
