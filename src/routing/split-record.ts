/**
 * What the proxy records of a split per request: the assignment counter and, on a first
 * assignment, the exposure log line; when the answer is done, the variant's metrics and its
 * guardrail window. Called by proxy-plugin.ts and upgrade.ts only for routes with a split.
 */
import type { ProxyMetrics } from '../metrics/proxy-metrics.js'
import { statusClass } from '../metrics/split-metrics.js'
import type { RoutedRequest, RoutedSplit } from './request-edge.js'

export interface ExposureLog {
  info(obj: object, msg: string): void
}

export function recordSplitAssignment(metrics: ProxyMetrics, s: RoutedSplit, reqId: string, log: ExposureLog): void {
  metrics.splitAssignments.labels(s.name, s.variant, s.source).inc()
  if (!s.exposure) return
  metrics.splits.exposures.get(s.name, s.variant).inc()
  // The key's hash, never the key itself (a user id): analysts join on it, nobody reads it back.
  log.info({ reqId, split: s.name, variant: s.variant, source: s.source, key: s.keyHash.toString(16).padStart(8, '0'), ...(s.previous === undefined ? {} : { previous: s.previous }) }, 'exposure')
}

/** A finished answer (code 499: the client went away) of a request routed through a split. */
export function recordSplitAnswer(metrics: ProxyMetrics, routed: RoutedRequest, code: number, seconds: number): void {
  const s = routed.split as RoutedSplit
  metrics.splits.requests.get(s.name, s.variant, statusClass(code)).inc()
  metrics.splits.duration.get(s.name, s.variant).observe(seconds)
  routed.route.split?.observe(s.arm, code, seconds)
}
