/**
 * The guardrail's verdict: which variants do worse than the control over the window. Pure, so
 * the thresholds are tested on plain numbers.
 */
import type { SplitGuardrailConfig } from '../config/schema.js'
import type { ArmWindowStats } from './split-window.js'

export interface GuardrailBreach {
  readonly arm: number
  readonly reason: '5xx' | 'latency'
  readonly detail: string
}

/**
 * Variants (other than the control, and not `skip`ped) whose 5xx ratio exceeds the control's by
 * more than max_5xx_ratio_delta, or whose p99 exceeds the control's times max_p99_ratio and by
 * more than min_p99_delta_ms, both with at least min_requests in the window.
 */
export function guardrailBreaches(stats: readonly ArmWindowStats[], control: number, variants: number, cfg: SplitGuardrailConfig, skip: (arm: number) => boolean): GuardrailBreach[] {
  const c = stats[control]
  if (!cfg.enabled || c.requests < cfg.min_requests) return []
  const out: GuardrailBreach[] = []
  for (let arm = 0; arm < variants; arm++) {
    if (arm === control || skip(arm)) continue
    const v = stats[arm]
    if (v.requests < cfg.min_requests) continue
    const delta = v.errorRatio - c.errorRatio
    if (delta > cfg.max_5xx_ratio_delta) {
      out.push({ arm, reason: '5xx', detail: `5xx ratio ${pct(v.errorRatio)} against the control's ${pct(c.errorRatio)} (margin ${pct(cfg.max_5xx_ratio_delta)}) over ${v.requests} and ${c.requests} requests` })
      continue
    }
    if (cfg.max_p99_ratio > 0 && v.p99Ms !== null && c.p99Ms !== null && v.p99Ms > c.p99Ms * cfg.max_p99_ratio && v.p99Ms - c.p99Ms > cfg.min_p99_delta_ms) {
      out.push({ arm, reason: 'latency', detail: `p99 ${ms(v.p99Ms)} against the control's ${ms(c.p99Ms)} (limit x${cfg.max_p99_ratio} and +${cfg.min_p99_delta_ms} ms) over ${v.requests} and ${c.requests} requests` })
    }
  }
  return out
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`
}

function ms(x: number): string {
  return Number.isFinite(x) ? `<=${x} ms` : '>10 s'
}
