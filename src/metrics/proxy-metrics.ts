import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from 'prom-client'
import { ChildCache, FastCounterChild, FastGaugeChild, FastHistogramChild } from './label-cache.js'
import { createSplitMetrics } from './split-metrics.js'

/** Methods we label by name; anything else is counted as "other" to bound label cardinality. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])
export function methodLabel(method: string): string {
  return KNOWN_METHODS.has(method) ? method : 'other'
}

/**
 * prom-client's default gauges that end in _total, which Prometheus keeps for counters
 * (`promtool check metrics`: non-counter metrics should not have "_total" suffix). Each is the
 * sum of its labelled twin (nodejs_active_handles{type} and so on), so nothing is lost:
 * sum(nodejs_active_handles) is the same number.
 */
const GAUGES_NAMED_TOTAL = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

/** prom-client's process and Node.js metrics (prefixed in a cluster primary), minus the misnamed gauges. */
export function collectProcessMetrics(registry: Registry, prefix = ''): void {
  collectDefaultMetrics({ register: registry, prefix })
  for (const name of GAUGES_NAMED_TOTAL) registry.removeSingleMetric(prefix + name)
}

// Buckets in seconds, from 0.5 ms (a cache hit) to 30 s (the default upstream timeout).
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * Every proxy metric, registered on the app's own Registry (no global default registry, so
 * tests can build many apps). Labels are route, pool and member names, never raw paths.
 */
export function createProxyMetrics(registry: Registry) {
  collectProcessMetrics(registry)
  const m = {
    requests: new Counter({
      name: 'switchyard_requests_total',
      help: 'Requests answered by the proxy, by route, pool, method and status code.',
      labelNames: ['route', 'pool', 'method', 'code'] as const,
      registers: [registry]
    }),
    requestDuration: new Histogram({
      name: 'switchyard_request_duration_seconds',
      help: 'Time from receiving a request to finishing its response, by route and pool.',
      labelNames: ['route', 'pool'] as const,
      buckets: LATENCY_BUCKETS,
      registers: [registry]
    }),
    upstreamDuration: new Histogram({
      name: 'switchyard_upstream_request_duration_seconds',
      help: 'Time from sending a request upstream to receiving its response headers, by pool and member.',
      labelNames: ['pool', 'member'] as const,
      buckets: LATENCY_BUCKETS,
      registers: [registry]
    }),
    inFlight: new Gauge({
      name: 'switchyard_requests_in_flight',
      help: 'Requests being handled now, by route.',
      labelNames: ['route'] as const,
      registers: [registry]
    }),
    upstreamErrors: new Counter({
      name: 'switchyard_upstream_errors_total',
      help: 'Failed upstream exchanges by pool, member and kind (refused, reset, connect_timeout, timeout, dns, protocol, no_member, other).',
      labelNames: ['pool', 'member', 'kind'] as const,
      registers: [registry]
    }),
    splitAssignments: new Counter({
      name: 'switchyard_split_assignments_total',
      help: 'Requests sent to each variant of a split, by split, variant and how it was chosen (override, cookie, header, new).',
      labelNames: ['split', 'variant', 'source'] as const,
      registers: [registry]
    }),
    retries: new Counter({
      name: 'switchyard_retries_total',
      help: 'Retries on another member, by route, pool and reason (refused, reset, connect_timeout, dns, status_5xx).',
      labelNames: ['route', 'pool', 'reason'] as const,
      registers: [registry]
    }),
    retryBudgetExhausted: new Counter({
      name: 'switchyard_retry_budget_exhausted_total',
      help: 'Retries not made because the pool\'s retry budget was spent.',
      labelNames: ['pool'] as const,
      registers: [registry]
    }),
    ejections: new Counter({
      name: 'switchyard_upstream_ejections_total',
      help: 'Times a member was ejected by outlier detection.',
      labelNames: ['pool', 'member'] as const,
      registers: [registry]
    }),
    unrouted: new Counter({
      name: 'switchyard_unrouted_requests_total',
      help: 'Requests answered by the proxy itself, by reason (no_route, bad_host, bad_path, method_not_allowed, body_too_large, pool_saturated, overloaded).',
      labelNames: ['reason'] as const,
      registers: [registry]
    })
  }
  return {
    ...m,
    /** Per-variant series of splits (split-metrics.ts). */
    splits: createSplitMetrics(registry, LATENCY_BUCKETS),
    /** Cached children for the per-request series. */
    hot: {
      requests: new ChildCache((route, pool, method, code) => new FastCounterChild(m.requests, ['route', 'pool', 'method', 'code'], [route, pool, method, code])),
      requestDuration: new ChildCache((route, pool) => new FastHistogramChild(m.requestDuration, ['route', 'pool'], [route, pool])),
      inFlight: new ChildCache((route) => new FastGaugeChild(m.inFlight, ['route'], [route])),
      upstreamDuration: new ChildCache((pool, member) => new FastHistogramChild(m.upstreamDuration, ['pool', 'member'], [pool, member]))
    }
  }
}

export type ProxyMetrics = ReturnType<typeof createProxyMetrics>
