import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Control } from '../control/control.js'
import { timingSafeEqual } from 'node:crypto'
import { STATUS_PAGE_CSP, STATUS_PAGE_HTML } from './status-page.js'
import type { SplitAction } from './split-admin.js'

export interface AdminDeps {
  /** The process's control: one app, or a cluster's workers. */
  control: Control
  /** Bearer token for mutating calls (read per call: a reload may change it). */
  token: () => string | undefined
  /** Without a token, mutating calls are open only on a loopback listener. */
  loopbackOnly: boolean
}

/** Largest body a mutating admin call reads (a purge by tags lists at most 1000 of them). */
const ADMIN_BODY_LIMIT = 1024 * 1024

/**
 * A purge body as JSON, whatever Content-Type says (curl -d sends
 * application/x-www-form-urlencoded): the parsed value, or the 400 answer's text.
 */
export function parseJsonBody(raw: unknown): { ok: true; value: unknown } | { ok: false; error: string } {
  const text = typeof raw === 'string' ? raw : Buffer.isBuffer(raw) ? raw.toString('utf8') : ''
  if (text.trim() === '') return { ok: false, error: 'expected a JSON body such as {"url": "http://example.com/path"}' }
  try {
    return { ok: true, value: JSON.parse(text) as unknown }
  } catch (err) {
    return { ok: false, error: `the body is not JSON (${(err as Error).message}); expected e.g. {"url": "http://example.com/path"}` }
  }
}

/**
 * A browser request made by another site's page (CSRF): its Origin is not the admin listener
 * itself, or Fetch Metadata says so. A page can send a form or a no-cors fetch without a
 * preflight; curl, Prometheus and scripts send neither field.
 */
export function crossSite(headers: FastifyRequest['headers']): boolean {
  const site = headers['sec-fetch-site']
  if (site === 'cross-site' || site === 'same-site') return true
  const origin = headers.origin
  if (origin === undefined) return false
  try {
    return new URL(origin).host !== String(headers.host ?? '')
  } catch {
    return true
  }
}

/**
 * Whether a request names the admin listener by a loopback name (localhost, 127.0.0.0/8, ::1).
 * A page that rebinds its own name to 127.0.0.1 (DNS rebinding) sends its own name as Host.
 */
export function loopbackHost(host: string | undefined): boolean {
  if (host === undefined) return false
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '')
  const lower = name.toLowerCase()
  return lower === 'localhost' || lower.endsWith('.localhost') || lower === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(lower)
}

/** The admin listener: metrics, probes, the status page, read-only views of live state, reload, purge and drain. */
export async function adminPlugin(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  const { control } = deps
  app.get('/metrics', async (_req, reply) => reply.header('content-type', control.contentType).send(await control.metrics()))
  app.get('/healthz', async (_req, reply) => reply.type('text/plain').send('ok\n'))
  app.get('/readyz', async (_req, reply) => {
    if (control.ready()) return reply.type('text/plain').send('ready\n')
    return reply.code(503).type('text/plain').send('not ready\n')
  })
  app.get('/admin/pools', async () => control.pools())
  /** Splits: weights configured and in force, ramp stage, window statistics, guardrail state. */
  app.get('/admin/splits', async (_req, reply) => reply.header('cache-control', 'no-store').send(await control.splits()))
  app.get('/admin/sidecars', async () => ({ sidecars: control.sidecars() }))
  /** Everything the status page shows, as one JSON document (rates over a recent window). */
  app.get('/admin/status', async (_req, reply) => reply.header('cache-control', 'no-store').send(await control.status()))
  /** The status page: a self-contained HTML page polling /admin/status. */
  app.get('/', async (_req, reply) => reply
    .header('content-type', 'text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('content-security-policy', STATUS_PAGE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .send(STATUS_PAGE_HTML))

  /** Mutating calls: open on loopback without a token; elsewhere only with `Authorization: Bearer <admin.token>`. */
  const authorize = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (crossSite(req.headers)) {
      await reply.code(403).type('text/plain').send('403 Forbidden: a mutating admin call from another site\'s page is refused (Origin / Sec-Fetch-Site)\n')
      return
    }
    const configured = deps.token()
    const token = configured === undefined || configured === '' ? undefined : configured
    if (token === undefined) {
      if (deps.loopbackOnly && loopbackHost(req.headers.host)) return
      if (deps.loopbackOnly) {
        await reply.code(403).type('text/plain').send('403 Forbidden: without admin.token, mutating admin calls must name the admin listener as localhost, 127.0.0.1 or [::1] in Host\n')
        return
      }
      await reply.code(403).type('text/plain').send('403 Forbidden: set admin.token to use mutating admin calls on a non-loopback admin listener\n')
      return
    }
    const got = Buffer.from(String(req.headers.authorization ?? ''))
    const want = Buffer.from(`Bearer ${token}`)
    if (got.length !== want.length || !timingSafeEqual(got, want)) {
      await reply.code(401).header('www-authenticate', 'Bearer').type('text/plain').send('401 Unauthorized: Authorization: Bearer <admin.token> required\n')
    }
  }

  // Mutating calls read their body as text whatever its Content-Type (or none): purge parses
  // it as JSON itself, reload and drain take none.
  await app.register(async (mutating) => {
    mutating.removeAllContentTypeParsers()
    mutating.addContentTypeParser('*', { parseAs: 'string', bodyLimit: ADMIN_BODY_LIMIT }, (_req, body, done) => { done(null, body) })

    /**
     * Purge: {"url": "http://host/path?q"} drops that URL (every variant and partition);
     * {"host": "h", "prefix": "/img/"} drops every stored URL of the host under the prefix.
     * A prefix must name a path ("/" only with "all_paths": true): no pattern wipes the store.
     */
    mutating.post('/admin/cache/purge', { preHandler: authorize }, async (req, reply) => {
      const body = parseJsonBody(req.body)
      if (!body.ok) return reply.code(400).type('text/plain').send(`400 Bad Request: ${body.error}\n`)
      const r = await control.purge(body.value)
      if (r.status === 404) return reply.code(404).type('text/plain').send('404 Not Found: no route has the cache enabled\n')
      return reply.code(r.status).send(r.body)
    })

    /** Re-reads the config file: 200 with every change and its class, 422 when it is not applied. */
    mutating.post('/admin/reload', { preHandler: authorize }, async (_req, reply) => {
      const r = await control.reload()
      return reply.code(r.ok ? 200 : 422).send(r)
    })

    /** Drain a member by hand (no new requests; in-flight ones finish), or put it back. */
    const drainRoute = (drained: boolean) => async (req: FastifyRequest, reply: FastifyReply) => {
      const { pool, member } = req.params as { pool: string; member: string }
      const r = await control.drain(pool, member, drained)
      if (r.status === 404) return reply.code(404).type('text/plain').send(`404 Not Found: ${String(r.body.error)}\n`)
      return reply.code(r.status).send(r.body)
    }
    /** Undo a split's guardrail rollbacks and promotion; or give one variant every client (outside the holdout). */
    const splitRoute = (action: SplitAction) => async (req: FastifyRequest, reply: FastifyReply) => {
      const { split, variant } = req.params as { split: string; variant?: string }
      const r = await control.split({ split, action, ...(variant === undefined ? {} : { variant }) })
      if (r.status === 404) return reply.code(404).type('text/plain').send(`404 Not Found: ${String(r.body.error)}\n`)
      return reply.code(r.status).send(r.body)
    }
    mutating.post('/admin/splits/:split/reset', { preHandler: authorize }, splitRoute('reset'))
    mutating.post('/admin/splits/:split/variants/:variant/promote', { preHandler: authorize }, splitRoute('promote'))
    mutating.post('/admin/pools/:pool/members/:member/drain', { preHandler: authorize }, drainRoute(true))
    mutating.post('/admin/pools/:pool/members/:member/undrain', { preHandler: authorize }, drainRoute(false))
  })
}
