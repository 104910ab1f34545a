import { Counter, Gauge, type Registry } from 'prom-client'

/** Why an L4 connection or datagram failed (switchyard_l4_errors_total's reason label). */
export type L4ErrorReason =
  /** The member refused or reset the connect (tcp), or answered ICMP port unreachable (udp). */
  | 'connect_failed'
  /** The member did not accept the connection within connect_timeout_ms. */
  | 'connect_timeout'
  /** No member could be tried: none healthy, or every one failed (the client is closed / the datagram dropped). */
  | 'no_member'
  /** The listener's max_connections (tcp) or max_sessions (udp) was reached. */
  | 'limit'
  /** An established connection ended with an error on the member's side. */
  | 'upstream_reset'
  /** An established connection ended with an error on the client's side. */
  | 'client_reset'
  /** Closed after idle_timeout_ms with no bytes either way. */
  | 'idle_timeout'
  /** A reply dropped because it would have sent the client more than max_reply_factor times its bytes. */
  | 'amplification'

export type L4Direction = 'upstream' | 'downstream'

/**
 * The L4 listener metrics, on the app's own Registry. Pool and member labels are the pool's
 * name and the member's name, as in switchyard_upstream_* (a member's name defaults to its
 * host:port), so one dashboard joins HTTP and L4 traffic of a pool.
 */
export function createL4Metrics(registry: Registry) {
  return {
    connections: new Counter({
      name: 'switchyard_l4_connections_total',
      help: 'TCP connections a tcp listener accepted and connected to a member, by listener, pool and member.',
      labelNames: ['listener', 'pool', 'member'] as const,
      registers: [registry]
    }),
    connectionsOpen: new Gauge({
      name: 'switchyard_l4_connections_open',
      help: 'Client connections open now on each tcp listener (connecting ones included).',
      labelNames: ['listener'] as const,
      registers: [registry]
    }),
    sessions: new Counter({
      name: 'switchyard_l4_sessions_total',
      help: 'UDP sessions (client address to member) a udp listener opened, by listener, pool and member.',
      labelNames: ['listener', 'pool', 'member'] as const,
      registers: [registry]
    }),
    sessionsOpen: new Gauge({
      name: 'switchyard_l4_sessions_open',
      help: 'UDP sessions open now on each udp listener.',
      labelNames: ['listener'] as const,
      registers: [registry]
    }),
    bytes: new Counter({
      name: 'switchyard_l4_bytes_total',
      help: 'Bytes relayed by L4 listeners: upstream = client to member, downstream = member to client.',
      labelNames: ['listener', 'pool', 'member', 'direction'] as const,
      registers: [registry]
    }),
    errors: new Counter({
      name: 'switchyard_l4_errors_total',
      help: 'L4 failures by listener, pool, member (empty when none was picked) and reason.',
      labelNames: ['listener', 'pool', 'member', 'reason'] as const,
      registers: [registry]
    })
  }
}

export type L4Metrics = ReturnType<typeof createL4Metrics>
