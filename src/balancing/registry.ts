import type { BalancerName } from '../config/schema.js'
import type { Balancer } from './balancer.js'
import { RoundRobinBalancer } from './round-robin.js'
import { WeightedBalancer } from './weighted.js'
import { LeastRequestBalancer } from './least-request.js'
import { RandomBalancer } from './random.js'
import { ConsistentHashBalancer } from './consistent-hash.js'

/** The one place that maps a policy name to its class; the schema rejects unknown names first. */
const REGISTRY: Record<BalancerName, () => Balancer> = {
  round_robin: () => new RoundRobinBalancer(),
  weighted: () => new WeightedBalancer(),
  least_request: () => new LeastRequestBalancer(),
  least_connections: () => new LeastRequestBalancer(),
  random: () => new RandomBalancer(),
  hash: () => new ConsistentHashBalancer()
}

export function createBalancer(name: BalancerName): Balancer {
  const make = REGISTRY[name]
  if (make === undefined) throw new Error(`unknown balancer ${JSON.stringify(name)} (known: ${Object.keys(REGISTRY).join(', ')})`)
  return make()
}

export const balancerNames = Object.keys(REGISTRY) as BalancerName[]
