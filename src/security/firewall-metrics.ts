import { Counter, type Registry } from 'prom-client'

/** The application firewall's counters, on the app's own Registry. Labels are config names only. */
export function createFirewallMetrics(registry: Registry) {
  return {
    denials: new Counter({
      name: 'switchyard_access_denials_total',
      help: 'Requests refused by an access rule, by route, rule and reason (deny, missing_credentials, bad_credentials, invalid_token, insufficient_claims).',
      labelNames: ['route', 'rule', 'reason'] as const,
      registers: [registry]
    }),
    rateLimited: new Counter({
      name: 'switchyard_rate_limited_total',
      help: 'Requests answered 429 by a rate limit rule, by route and rule.',
      labelNames: ['route', 'rule'] as const,
      registers: [registry]
    }),
    rateLimitErrors: new Counter({
      name: 'switchyard_rate_limit_errors_total',
      help: 'Rate limit checks that failed (Redis unreachable or slow) and let the request through (fail open), by route and rule.',
      labelNames: ['route', 'rule'] as const,
      registers: [registry]
    })
  }
}

export type FirewallMetrics = ReturnType<typeof createFirewallMetrics>
