import type { FastifyInstance } from 'fastify'
import type { Registry } from 'prom-client'
import type { Runtime } from '../routing/runtime.js'
import type { Supervisor } from '../sidecars/supervisor.js'

export interface AdminDeps {
  registry: Registry
  runtime: () => Runtime
  supervisor: Supervisor | undefined
  /** False until the proxy listens, and again once it starts draining. */
  ready: () => boolean
}

/** The admin listener: metrics, probes and read-only views of live state. */
export async function adminPlugin(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  app.get('/metrics', async (_req, reply) => {
    const own = await deps.registry.metrics()
    const sidecars = deps.supervisor === undefined ? '' : await deps.supervisor.collectMetrics()
    return reply.header('content-type', deps.registry.contentType).send(sidecars === '' ? own : `${own}\n${sidecars}`)
  })
  app.get('/healthz', async (_req, reply) => reply.type('text/plain').send('ok\n'))
  app.get('/readyz', async (_req, reply) => {
    if (deps.ready()) return reply.type('text/plain').send('ready\n')
    return reply.code(503).type('text/plain').send('not ready\n')
  })
  app.get('/admin/pools', async () => {
    const pools: Record<string, unknown> = {}
    for (const [name, pool] of deps.runtime().pools) pools[name] = pool.toJSON()
    return { pools }
  })
  app.get('/admin/sidecars', async () => ({ sidecars: deps.supervisor?.list() ?? [] }))
}
