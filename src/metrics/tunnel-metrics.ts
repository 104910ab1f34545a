import { Counter, Gauge, type Registry } from 'prom-client'
import { ChildCache } from './label-cache.js'

/** How an upgrade request ended, as switchyard_websocket_tunnels_total counts it. */
export type TunnelResult =
  /** The member answered 101 and the tunnel is open. */
  | 'opened'
  /** The member answered the upgrade with another status, relayed to the client. */
  | 'refused_by_member'
  /** No tunnel: the proxy answered 502/503/504 (member unreachable or too slow, none available, pool saturated). */
  | 'error'
  /** The route's max_tunnels was reached: 503 with Retry-After. */
  | 'limit'
  /** The route has `websocket: false`: forwarded as a plain request without the Upgrade. */
  | 'disabled'
  /** The client went away before the member answered. */
  | 'client_gone'
  /** The listener is draining (shutdown): 503 with Connection: close, so the client reconnects elsewhere. */
  | 'draining'
  /** An access rule refused the upgrade (401, 403 or 429, security/firewall.ts). */
  | 'denied'

/** Why an open tunnel closed (switchyard_websocket_tunnels_closed_total). */
export type TunnelCloseReason = 'client_closed' | 'upstream_closed' | 'client_error' | 'upstream_error' | 'idle_timeout' | 'shutdown'

export type TunnelDirection = 'upstream' | 'downstream'

/** Where the byte counter reads bytes moved since its last read (the open tunnels, at scrape time). */
export interface TunnelByteSource {
  flushBytes(add: (route: string, direction: TunnelDirection, bytes: number) => void): void
}

/**
 * The WebSocket tunnel metrics, on the app's own Registry. Bytes are summed per tunnel and
 * added to the counter when Prometheus scrapes (and when a tunnel closes), so relaying a frame
 * costs an addition, not a label lookup.
 */
export function createTunnelMetrics(registry: Registry, bytes: TunnelByteSource) {
  const open = new Gauge({
    name: 'switchyard_websocket_tunnels_open',
    help: 'WebSocket tunnels open now, by route and pool.',
    labelNames: ['route', 'pool'] as const,
    registers: [registry]
  })
  const total = new Counter({
    name: 'switchyard_websocket_tunnels_total',
    help: 'WebSocket upgrade requests by route, pool and result (opened, refused_by_member, error, limit, disabled, client_gone, draining, denied).',
    labelNames: ['route', 'pool', 'result'] as const,
    registers: [registry]
  })
  const closed = new Counter({
    name: 'switchyard_websocket_tunnels_closed_total',
    help: 'WebSocket tunnels closed, by route, pool and reason (client_closed, upstream_closed, client_error, upstream_error, idle_timeout, shutdown).',
    labelNames: ['route', 'pool', 'reason'] as const,
    registers: [registry]
  })
  const byteCounter: Counter<'route' | 'direction'> = new Counter({
    name: 'switchyard_websocket_bytes_total',
    help: 'Bytes relayed through WebSocket tunnels, by route and direction (upstream: client to member; downstream: member to client).',
    labelNames: ['route', 'direction'] as const,
    registers: [registry],
    collect() {
      bytes.flushBytes((route, direction, n) => byteCounter.labels(route, direction).inc(n))
    }
  })
  return {
    open: new ChildCache((route, pool) => open.labels(route, pool)),
    total: new ChildCache((route, pool, result) => total.labels(route, pool, result)),
    closed: new ChildCache((route, pool, reason) => closed.labels(route, pool, reason)),
    bytes: (route: string, direction: TunnelDirection, n: number): void => { if (n > 0) byteCounter.labels(route, direction).inc(n) }
  }
}

export type TunnelMetrics = ReturnType<typeof createTunnelMetrics>
