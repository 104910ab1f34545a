/**
 * A split's ramp schedule: weights that change at set times (1% -> 5% -> 25% -> 50%), as
 * experiment platforms roll a treatment out. Pure: times in, stage out.
 */
import { parseDuration } from '../config/schema-walk.js'

export interface RampStageConfig {
  readonly at: string
  readonly weights: Readonly<Record<string, number>>
}

/** `at` read: an absolute wall-clock time, or milliseconds after the split started. */
export type RampTime = { readonly absoluteMs: number } | { readonly afterMs: number }

/** "2026-05-01T09:00:00Z" or "30m"; undefined when it is neither. */
export function parseRampTime(at: string): RampTime | undefined {
  const after = parseDuration(at)
  if (after !== undefined) return { afterMs: after }
  // An ISO 8601 date-time (a bare number would parse as a year: not accepted).
  if (!/^\d{4}-\d{2}-\d{2}T/.test(at)) return undefined
  const ms = Date.parse(at)
  return Number.isNaN(ms) ? undefined : { absoluteMs: ms }
}

/** The stages with their times resolved against the split's start, in time order. */
export class RampSchedule {
  /** Each stage's weights by variant index (a variant the stage does not name gets 0). */
  readonly stages: readonly { readonly atMs: number; readonly weights: readonly number[]; readonly at: string }[]

  constructor(stages: readonly RampStageConfig[], variantNames: readonly string[], startMs: number) {
    this.stages = stages
      .map((s) => {
        const t = parseRampTime(s.at)
        // loadConfig rejected unparsable times; a stage that slipped through never starts.
        const atMs = t === undefined ? Infinity : 'absoluteMs' in t ? t.absoluteMs : startMs + t.afterMs
        return { atMs, at: s.at, weights: variantNames.map((n) => s.weights[n] ?? 0) }
      })
      .sort((a, b) => a.atMs - b.atMs)
  }

  /** The index of the stage in force at `nowMs`, -1 before the first (the variants' own weights). */
  stageAt(nowMs: number): number {
    let i = -1
    while (i + 1 < this.stages.length && this.stages[i + 1].atMs <= nowMs) i++
    return i
  }

  /** When the stage after `stage` starts (Infinity when it is the last). */
  nextAt(stage: number): number {
    return stage + 1 < this.stages.length ? this.stages[stage + 1].atMs : Infinity
  }
}
