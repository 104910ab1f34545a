import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Control } from '../control/control.js'
import { timingSafeEqual } from 'node:crypto'

export interface AdminDeps {
  /** The process's control: one app, or a cluster's workers. */
  control: Control
  /** Bearer token for mutating calls (read per call: a reload may change it). */
  token: () => string | undefined
  /** Without a token, mutating calls are open only on a loopback listener. */
  loopbackOnly: boolean
}

/** The admin listener: metrics, probes, read-only views of live state, reload and purge. */
export async function adminPlugin(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  const { control } = deps
  app.get('/metrics', async (_req, reply) => reply.header('content-type', control.contentType).send(await control.metrics()))
  app.get('/healthz', async (_req, reply) => reply.type('text/plain').send('ok\n'))
  app.get('/readyz', async (_req, reply) => {
    if (control.ready()) return reply.type('text/plain').send('ready\n')
    return reply.code(503).type('text/plain').send('not ready\n')
  })
  app.get('/admin/pools', async () => control.pools())
  app.get('/admin/sidecars', async () => ({ sidecars: control.sidecars() }))

  /** Mutating calls: open on loopback without a token; elsewhere only with `Authorization: Bearer <admin.token>`. */
  const authorize = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const configured = deps.token()
    const token = configured === undefined || configured === '' ? undefined : configured
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
    const r = await control.purge(req.body)
    if (r.status === 404) return reply.code(404).type('text/plain').send('404 Not Found: no route has the cache enabled\n')
    return reply.code(r.status).send(r.body)
  })

  /** Re-reads the config file: 200 with every change and its class, 422 when it is not applied. */
  app.post('/admin/reload', { preHandler: authorize }, async (_req, reply) => {
    const r = await control.reload()
    return reply.code(r.ok ? 200 : 422).send(r)
  })
}
