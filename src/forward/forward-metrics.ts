import { Counter, Gauge, type Registry } from 'prom-client'
import { ChildCache } from '../metrics/label-cache.js'

/** Where the tunnel byte counter reads bytes moved since its last read (at scrape time). */
export interface ForwardByteSource {
  readonly size: number
  flushBytes(add: (direction: 'upstream' | 'downstream', bytes: number) => void): void
}

/**
 * The forward proxy's metrics, on the app's Registry; created only when a listener has
 * mode: forward. Labels are bounded: methods, status codes, results and rule names from the
 * config, never hosts or paths.
 */
export function createForwardMetrics(registry: Registry, tunnels: ForwardByteSource) {
  const requests = new Counter({
    name: 'switchyard_forward_requests_total',
    help: 'Requests answered by the forward proxy, by method (CONNECT included) and status code (499: the client went away).',
    labelNames: ['method', 'code'] as const,
    registers: [registry]
  })
  const tunnelsTotal = new Counter({
    name: 'switchyard_forward_tunnels_total',
    help: 'CONNECT requests by result: opened, denied (403/407), error (502/504: the origin could not be reached), limit (503: forward.max_tunnels).',
    labelNames: ['result'] as const,
    registers: [registry]
  })
  new Gauge({
    name: 'switchyard_forward_tunnels_active',
    help: 'CONNECT tunnels open now.',
    registers: [registry],
    collect() {
      this.set(tunnels.size)
    }
  })
  const bytes: Counter<'direction'> = new Counter({
    name: 'switchyard_forward_bytes_total',
    help: 'Bytes relayed through CONNECT tunnels, by direction (upstream: client to origin; downstream: origin to client).',
    labelNames: ['direction'] as const,
    registers: [registry],
    collect() {
      tunnels.flushBytes((direction, n) => bytes.labels(direction).inc(n))
    }
  })
  const denials = new Counter({
    name: 'switchyard_forward_denials_total',
    help: 'Forward proxy requests refused, by the rule that refused them (forward.deny[0], forward.allow, forward.ssrf, forward.connect_ports, forward.users, forward.clients, forward.filters.*).',
    labelNames: ['rule'] as const,
    registers: [registry]
  })
  return {
    requests: new ChildCache((method, code) => requests.labels(method, code)),
    tunnels: new ChildCache((result) => tunnelsTotal.labels(result)),
    denials: new ChildCache((rule) => denials.labels(rule)),
    bytes: (direction: 'upstream' | 'downstream', n: number): void => { if (n > 0) bytes.labels(direction).inc(n) }
  }
}

export type ForwardMetrics = ReturnType<typeof createForwardMetrics>
