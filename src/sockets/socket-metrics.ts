import { Counter, Gauge, type Registry } from 'prom-client'

export type ServerKind = 'udp' | 'tcp'

/**
 * The socket servers' metrics. Both servers may share one Registry (a process running UDP and
 * TCP, or a test), so each metric is registered once and reused: prom-client throws on a
 * second registration of the same name.
 */
export interface SocketMetrics {
  /** Messages by outcome: answered, rate_limited, reply_too_large, line_too_long. */
  messages: Counter<'server' | 'outcome'>
  /** Payload bytes read (in) and written (out). */
  bytes: Counter<'server' | 'direction'>
  /** Failures by kind: reset, broken_pipe, idle_timeout, max_connections, max_connections_per_address, send, socket, other. */
  errors: Counter<'server' | 'kind'>
  /** TCP connections by outcome: accepted, rejected (over max connections, or over the per-address cap). */
  connections: Counter<'server' | 'outcome'>
  activeConnections: Gauge<'server'>
  /** Connections whose reading is paused because the peer is not reading our answers. */
  pausedConnections: Gauge<'server'>
}

function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[]): Counter<L> {
  const existing = registry.getSingleMetric(name)
  if (existing instanceof Counter) return existing as Counter<L>
  return new Counter({ name, help, labelNames, registers: [registry] })
}

function gauge<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[]): Gauge<L> {
  const existing = registry.getSingleMetric(name)
  if (existing instanceof Gauge) return existing as Gauge<L>
  return new Gauge({ name, help, labelNames, registers: [registry] })
}

export function createSocketMetrics(registry: Registry): SocketMetrics {
  return {
    messages: counter(registry, 'switchyard_socket_messages_total', 'Messages received by the socket servers, by server (udp, tcp) and outcome (answered, rate_limited, reply_too_large, line_too_long).', ['server', 'outcome']),
    bytes: counter(registry, 'switchyard_socket_bytes_total', 'Payload bytes received (in) and sent (out) by the socket servers.', ['server', 'direction']),
    errors: counter(registry, 'switchyard_socket_errors_total', 'Socket server failures by server and kind (reset, broken_pipe, idle_timeout, max_connections, max_connections_per_address, send, socket, other).', ['server', 'kind']),
    connections: counter(registry, 'switchyard_socket_connections_total', 'TCP connections by outcome (accepted, rejected over the connection limit or the per-address limit).', ['server', 'outcome']),
    activeConnections: gauge(registry, 'switchyard_socket_active_connections', 'Open TCP connections.', ['server']),
    pausedConnections: gauge(registry, 'switchyard_socket_paused_connections', 'TCP connections whose reading is paused until the client reads our answers (backpressure).', ['server'])
  }
}

/** A bounded label value for a socket error (Node's err.code would be unbounded in theory). */
export function errorKind(err: NodeJS.ErrnoException): 'reset' | 'broken_pipe' | 'timeout' | 'other' {
  switch (err.code) {
    case 'ECONNRESET': return 'reset'
    case 'EPIPE': return 'broken_pipe'
    case 'ETIMEDOUT': return 'timeout'
    default: return 'other'
  }
}

/** Reads one labelled value (for tests and logs; scraping uses the registry). */
export async function metricValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = registry.getSingleMetric(name)
  if (metric === undefined) return 0
  const { values } = await metric.get()
  const hit = values.find((v) => Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want))
  return hit?.value ?? 0
}
