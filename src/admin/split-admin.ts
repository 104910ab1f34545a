/**
 * GET /admin/splits and the split calls (reset, promote): each split's variants, configured and
 * effective weights, ramp stage, window statistics and guardrail state, read from the live
 * runtime. The state is this process's (with workers, each worker's: cluster-control.ts asks
 * every worker and fans the calls out).
 */
import type { SplitAssigner } from '../balancing/split.js'
import type { Runtime } from '../routing/runtime.js'
import type { AdminAnswer } from './member-drain.js'

export type SplitAction = 'reset' | 'promote'

/** The payload of a split call (also what crosses IPC to a worker). */
export interface SplitRequest {
  split: string
  action: SplitAction
  variant?: string
}

export function splitsView(rt: Runtime): Record<string, unknown>[] {
  return [...rt.splits.values()].map((s) => splitView(s, rt))
}

function splitView(s: SplitAssigner<unknown>, rt: Runtime): Record<string, unknown> {
  const nowMs = s.time()
  const st = s.state
  const w = s.weights()
  let sum = 0
  for (const x of w) sum += x
  const stats = st.window.stats(nowMs)
  const ramp = s.rampStage()
  const window = (i: number): Record<string, unknown> => {
    const x = stats[i]
    return { requests: x.requests, errors_5xx: x.errors, error_ratio: round(x.errorRatio), p99_ms: x.p99Ms === null ? null : Number.isFinite(x.p99Ms) ? x.p99Ms : 'over 10000' }
  }
  const cfg = s.config
  return {
    name: s.name,
    routes: rt.routes.filter((r) => r.split === s).map((r) => r.name),
    control: s.variants[s.control].name,
    holdout_percent: cfg.holdout,
    started_at: new Date(st.startMs).toISOString(),
    ramp: {
      stage: ramp.stage < 0 ? null : ramp.stage,
      stages: s.rampSchedule.stages.map((x) => ({ at: x.at, starts_at: Number.isFinite(x.atMs) ? new Date(x.atMs).toISOString() : null })),
      next_at: Number.isFinite(ramp.nextAtMs) ? new Date(ramp.nextAtMs).toISOString() : null
    },
    promoted: st.promoted ?? null,
    guardrail: s.guardrail ?? null,
    window_s: st.window.seconds,
    variants: s.variants.map((v, i) => {
      const rb = st.rolledBack.get(v.name)
      return {
        name: v.name,
        pool: v.pool,
        configured_weight: v.weight,
        stage_weight: ramp.stage < 0 ? v.weight : s.rampSchedule.stages[ramp.stage].weights[i],
        effective_weight: w[i],
        share: sum > 0 ? round(w[i] / sum) : 0,
        rolled_back: rb === undefined ? null : { at: new Date(rb.atMs).toISOString(), reason: rb.reason, detail: rb.detail },
        window: window(i)
      }
    }),
    holdout: { pool: s.holdoutArm.pool, window: window(s.variants.length) },
    events: st.events
  }
}

function round(x: number): number {
  return Math.round(x * 10000) / 10000
}

/** Applies a split call: 404 for an unknown split or variant, 400 for a promote without variant. */
export function applySplitAction(rt: Runtime, req: SplitRequest): AdminAnswer {
  const s = rt.splits.get(req.split)
  if (s === undefined) return { status: 404, body: { error: `no split ${JSON.stringify(req.split)} (splits: ${[...rt.splits.keys()].join(', ') || 'none'})` } }
  if (req.action === 'reset') {
    s.reset()
  } else {
    const v = req.variant ?? ''
    if (!s.promote(v)) return { status: 404, body: { error: `no variant ${JSON.stringify(v)} in split ${JSON.stringify(s.name)} (variants: ${s.variants.map((x) => x.name).join(', ')})` } }
  }
  return { status: 200, body: { split: s.name, action: req.action, ...(req.variant === undefined ? {} : { variant: req.variant }), promoted: s.state.promoted ?? null, rolled_back: [...s.state.rolledBack.keys()] } }
}
