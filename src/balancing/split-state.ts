/**
 * What a split learns while it runs: when it started (relative ramp times count from here), its
 * sliding window, guardrail rollbacks, a promotion, and recent events. Kept by split name across
 * reloads while the split's config stays the same (runtime.ts), so a reload neither restarts a
 * ramp nor brings a rolled-back variant back.
 */
import type { SplitConfig } from '../config/schema.js'
import { SplitWindow } from './split-window.js'

export interface SplitEvent {
  readonly at: string
  readonly split: string
  readonly action: 'rollback' | 'reset' | 'promote'
  readonly variant?: string
  readonly reason?: string
  readonly detail?: string
}

export interface Rollback {
  readonly atMs: number
  readonly reason: string
  readonly detail: string
}

/** Exposure de-duplication for header-keyed clients: at most this many key hashes remembered. */
const SEEN_MAX = 100_000
const EVENTS_MAX = 20

export class SplitState {
  /** The config it belongs to, as JSON: a reload keeps the state only while this is unchanged. */
  readonly key: string
  readonly startMs: number
  readonly window: SplitWindow
  /** Bumped on every rollback, reset and promotion: assigners recompute their weights. */
  version = 0
  promoted: string | undefined
  readonly rolledBack = new Map<string, Rollback>()
  readonly events: SplitEvent[] = []
  /** Header key hash -> the arm last exposed to it (insertion order = age, for eviction). */
  private readonly seen = new Map<number, number>()
  /** Where events go (the runtime sets the logger's warn on every build). */
  onEvent: (e: SplitEvent) => void = () => {}

  constructor(cfg: SplitConfig, nowMs: number) {
    this.key = JSON.stringify(cfg)
    this.startMs = nowMs
    this.window = new SplitWindow(cfg.variants.length + 1, cfg.guardrail?.window_s ?? 60)
  }

  /** Whether `arm` is news for this key hash (first sight, or another arm than last time); remembers it. */
  exposed(keyHash: number, arm: number): boolean {
    const last = this.seen.get(keyHash)
    if (last === arm) return false
    if (last === undefined && this.seen.size >= SEEN_MAX) this.seen.delete(this.seen.keys().next().value as number)
    this.seen.set(keyHash, arm)
    return true
  }

  rollback(split: string, variant: string, reason: string, detail: string, nowMs: number): void {
    this.rolledBack.set(variant, { atMs: nowMs, reason, detail })
    this.version++
    this.emit({ at: new Date(nowMs).toISOString(), split, action: 'rollback', variant, reason, detail })
  }

  /** Undoes rollbacks and a promotion, and forgets the window (its failures led to the rollback). */
  reset(split: string, nowMs: number): void {
    this.rolledBack.clear()
    this.promoted = undefined
    this.window.clear()
    this.version++
    this.emit({ at: new Date(nowMs).toISOString(), split, action: 'reset' })
  }

  promote(split: string, variant: string, nowMs: number): void {
    this.promoted = variant
    this.rolledBack.delete(variant)
    this.version++
    this.emit({ at: new Date(nowMs).toISOString(), split, action: 'promote', variant })
  }

  private emit(e: SplitEvent): void {
    this.events.push(e)
    if (this.events.length > EVENTS_MAX) this.events.shift()
    this.onEvent(e)
  }
}
