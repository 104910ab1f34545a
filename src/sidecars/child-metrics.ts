import type { Registry } from 'prom-client'

/** IPC message a supervisor sends to ask a sidecar for its metrics, and the reply's shape. */
export const METRICS_REQUEST = 'switchyard:metrics'

export interface MetricsMessage {
  type: typeof METRICS_REQUEST
  id: number
  metrics?: unknown[]
}

/**
 * When this process runs as a sidecar of `switchyard start` (it has an IPC channel), answer the
 * supervisor's metric requests with this registry's metrics, labelled with the sidecar's name,
 * and exit when the supervisor goes away so no child outlives the proxy.
 */
export function serveMetricsOverIpc(registry: Registry): void {
  if (typeof process.send !== 'function') return
  const name = process.env.SWITCHYARD_SIDECAR_NAME
  if (name !== undefined) registry.setDefaultLabels({ sidecar: name })
  process.on('message', (msg: MetricsMessage) => {
    if (msg?.type !== METRICS_REQUEST) return
    void registry.getMetricsAsJSON().then((metrics) => {
      if (process.connected) process.send?.({ type: METRICS_REQUEST, id: msg.id, metrics })
    })
  })
}

/** Exit when the parent's IPC channel closes (the supervisor died, even by SIGKILL). */
export function exitWithParent(onExit: () => void | Promise<void>): void {
  if (typeof process.send !== 'function') return
  process.on('disconnect', () => {
    void Promise.resolve(onExit()).finally(() => process.exit(0))
  })
}
