import type { Registry } from 'prom-client'
import type { AttemptDeps } from '../routing/attempt-loop.js'
import type { ProxyMetrics } from '../metrics/proxy-metrics.js'
import { createForwardMetrics, type ForwardMetrics } from './forward-metrics.js'
import { ForwardOrigins } from './forward-origins.js'
import type { ForwardScope } from './forward-policy.js'
import { ForwardTunnels } from './forward-tunnels.js'
import { systemResolver, type Resolver } from './safe-lookup.js'

/**
 * What the forward listeners of an app share across reloads: the origins' connection pools,
 * the open tunnels and the metrics. Created by app.ts when a listener has mode: forward; the
 * rules themselves are in the runtime (Runtime.forward), swapped on reload.
 */
export class ForwardService {
  readonly metrics: ForwardMetrics
  readonly origins: ForwardOrigins
  readonly tunnels = new ForwardTunnels()
  private readonly deps = new WeakMap<ForwardScope, AttemptDeps>()

  constructor(registry: Registry, private readonly proxyMetrics: ProxyMetrics, readonly resolver: Resolver = systemResolver) {
    this.metrics = createForwardMetrics(registry, this.tunnels)
    this.origins = new ForwardOrigins(resolver)
  }

  /** The attempt loop's dispatch for a scope: through that scope's connection pools. */
  attemptDeps(scope: ForwardScope): AttemptDeps {
    let d = this.deps.get(scope)
    if (d === undefined) {
      const origins = this.origins
      d = { dispatch: (origin, opts, handler) => origins.dispatch(scope, origin, opts, handler), metrics: this.proxyMetrics }
      this.deps.set(scope, d)
    }
    return d
  }

  async close(): Promise<void> {
    this.tunnels.closeAll()
    await this.origins.close()
  }
}
