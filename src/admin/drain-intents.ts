import type { Config } from '../config/schema.js'

export interface DrainIntent {
  pool: string
  member: string
  drained: boolean
}

/**
 * The drain and undrain calls made by hand, by pool and member name. A reload builds its new
 * runtime from the running one (members keep their drain state), but a call that lands while
 * a reload is being prepared changes the old runtime only: applying these again after each
 * reload keeps the last call in force. Members a reload removed are forgotten, so one added
 * back later starts undrained.
 */
export class DrainIntents {
  private readonly byPool = new Map<string, Map<string, boolean>>()

  set(pool: string, member: string, drained: boolean): void {
    const members = this.byPool.get(pool) ?? new Map<string, boolean>()
    members.set(member, drained)
    this.byPool.set(pool, members)
  }

  /** Every call's last word, drain or undrain. */
  all(): DrainIntent[] {
    return [...this.byPool].flatMap(([pool, members]) => [...members].map(([member, drained]) => ({ pool, member, drained })))
  }

  /** The members drained now (what a new worker must drain before it serves). */
  drained(): DrainIntent[] {
    return this.all().filter((i) => i.drained)
  }

  /** Forgets members that `config` no longer has. */
  prune(config: Config): void {
    for (const [pool, members] of this.byPool) {
      const cfg = config.pools[pool]
      const names = new Set(cfg?.members.map((m) => m.name ?? new URL(m.url).host) ?? [])
      for (const name of members.keys()) if (!names.has(name)) members.delete(name)
      if (members.size === 0) this.byPool.delete(pool)
    }
  }
}
