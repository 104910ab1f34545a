/**
 * Per-variant metrics of splits: requests by status class, latency, exposures, and the
 * guardrail's state. Labels are split and variant names from the config (plus "holdout") and
 * five status classes, so the series count is bounded by the config.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { Runtime } from '../routing/runtime.js'
import { ChildCache } from './label-cache.js'

/** Status class labels by hundreds digit (0 and 6-9 cannot reach here: "other" all the same). */
const CLASSES = ['other', '1xx', '2xx', '3xx', '4xx', '5xx', 'other', 'other', 'other', 'other']

export function statusClass(code: number): string {
  return CLASSES[Math.floor(code / 100)] ?? 'other'
}

/** `buckets`: the proxy's latency buckets (proxy-metrics.ts), so the two histograms compare. */
export function createSplitMetrics(registry: Registry, buckets: readonly number[]) {
  const requests = new Counter({
    name: 'switchyard_split_requests_total',
    help: 'Answers to requests routed through a split, by split, variant ("holdout" for held-out clients) and status class (499, the client went away, is 4xx).',
    labelNames: ['split', 'variant', 'class'] as const,
    registers: [registry]
  })
  const duration = new Histogram({
    name: 'switchyard_split_request_duration_seconds',
    help: 'Time from receiving a request to finishing its response, by split and variant.',
    labelNames: ['split', 'variant'] as const,
    buckets: [...buckets],
    registers: [registry]
  })
  const exposures = new Counter({
    name: 'switchyard_split_exposures_total',
    help: 'First assignments of a client to a variant (new clients, and known ones a ramp, rollback or promotion moved): the exposure log lines, counted.',
    labelNames: ['split', 'variant'] as const,
    registers: [registry]
  })
  return {
    exposures: new ChildCache((split, variant) => exposures.labels(split, variant)),
    requests: new ChildCache((split, variant, cls) => requests.labels(split, variant, cls)),
    duration: new ChildCache((split, variant) => duration.labels(split, variant))
  }
}

export type SplitMetrics = ReturnType<typeof createSplitMetrics>

/** The guardrail's state and the weights in force, read from the live runtime at scrape time. */
export function registerSplitGauges(registry: Registry, runtime: () => Runtime): void {
  new Gauge({
    name: 'switchyard_split_variant_rolled_back',
    help: 'Whether a variant is rolled back by its split\'s guardrail (1) or not (0); with workers, 1 when any worker rolled it back.',
    labelNames: ['split', 'variant'] as const,
    registers: [registry],
    aggregator: 'max',
    collect() {
      this.reset()
      for (const s of runtime().splits.values()) for (const v of s.variants) this.labels(s.name, v.name).set(s.state.rolledBack.has(v.name) ? 1 : 0)
    }
  })
  new Gauge({
    name: 'switchyard_split_variant_weight_ratio',
    help: 'Each variant\'s share of the clients outside the holdout now (ramp stage, rollbacks and promotion applied), 0 to 1; with workers, the average over the workers.',
    labelNames: ['split', 'variant'] as const,
    registers: [registry],
    aggregator: 'average',
    collect() {
      this.reset()
      for (const s of runtime().splits.values()) {
        const w = s.weights()
        let sum = 0
        for (const x of w) sum += x
        s.variants.forEach((v, i) => this.labels(s.name, v.name).set(sum > 0 ? w[i] / sum : 0))
      }
    }
  })
}
