import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Supervisor } from '../sidecars/supervisor.js'
import type { ReloadResult } from '../app.js'
import type { PurgeResult } from '../cache/purge.js'
import { timingSafeEqual } from 'node:crypto'

export interface AdminDeps {
  /** The Prometheus text to serve (one process's registry, or a cluster's aggregate). */
  metrics: () => Promise<string>
  contentType: string
  /** The pools' live state, as /admin/pools shows it. */
  pools: () => Promise<unknown>
  supervisor: Supervisor | undefined
  /** False until the proxy listens, and again once it starts draining. */
  ready: () => boolean
  reload: () => Promise<ReloadResult>
  /** Cache purge (undefined when no route caches); see src/cache/purge.ts for the request shape. */
  purge: ((request: unknown) => Promise<PurgeResult>) | undefined
  /** Bearer token for mutating calls; required when the admin listener is not on loopback. */
  token: string | undefined
  loopbackOnly: boolean
}

/** The admin listener: metrics, probes and read-only views of live state. */
export async function adminPlugin(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  app.get('/metrics', async (_req, reply) => reply.header('content-type', deps.contentType).send(await deps.metrics()))
  app.get('/healthz', async (_req, reply) => reply.type('text/plain').send('ok\n'))
  app.get('/readyz', async (_req, reply) => {
    if (deps.ready()) return reply.type('text/plain').send('ready\n')
    return reply.code(503).type('text/plain').send('not ready\n')
  })
  app.get('/admin/pools', async () => deps.pools())
  app.get('/admin/sidecars', async () => ({ sidecars: deps.supervisor?.list() ?? [] }))

  /** Mutating calls: open on loopback without a token; elsewhere only with `Authorization: Bearer <admin.token>`. */
  const authorize = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const token = deps.token === undefined || deps.token === '' ? undefined : deps.token
    if (token === undefined) {
      if (deps.loopbackOnly) return
      await reply.code(403).type('text/plain').send('403 Forbidden: set admin.token to use mutating admin calls on a non-loopback admin listener\n')
      return
    }
    const got = Buffer.from(String(req.headers.authorization ?? ''))
    const want = Buffer.from(`Bearer ${token}`)
    if (got.length !== want.length || !timingSafeEqual(got, want)) {
      await reply.code(401).header('www-authenticate', 'Bearer').type('text/plain').send('401 Unauthorized: Authorization: Bearer <admin.token> required\n')
    }
  }

  /**
   * Purge: {"url": "http://host/path?q"} drops that URL (every variant and partition);
   * {"host": "h", "prefix": "/img/"} drops every stored URL of the host under the prefix.
   * A prefix must name a path ("/" only with "all_paths": true): no pattern wipes the store.
   */
  app.post('/admin/cache/purge', { preHandler: authorize }, async (req, reply) => {
    if (deps.purge === undefined) return reply.code(404).type('text/plain').send('404 Not Found: no route has the cache enabled\n')
    const r = await deps.purge(req.body)
    return reply.code(r.status).send(r.body)
  })

  app.post('/admin/reload', { preHandler: authorize }, async (_req, reply) => {
    const r = await deps.reload()
    return reply.code(r.ok ? 200 : 422).send(r)
  })
}
