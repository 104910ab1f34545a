import { randomUUID } from 'node:crypto'
import { METHODS, type ServerResponse } from 'node:http'
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { classifyUpstreamError, NO_MEMBER, upstreamErrorBody } from '../errors.js'
import { methodLabel } from '../metrics/proxy-metrics.js'
import type { Member } from '../upstreams/member.js'
import type { Pool } from '../upstreams/pool.js'
import { Exchange, plain, type ProxyDeps } from './exchange.js'
import { ForwardHandler, dispatchOptions, rawPlain, type TryHooks } from './forwarder.js'
import { normalizeHost } from './route-table.js'
import { normalizePath } from './normalize-path.js'
import type { RouteRuntime, Runtime } from './runtime.js'

export type { ProxyDeps } from './exchange.js'

declare module 'fastify' {
  interface FastifyRequest {
    switchyard: Exchange | null
  }
}

const kExchange = Symbol('switchyard.exchange')
type TrackedResponse = ServerResponse & { [kExchange]?: Exchange }

const BODYLESS_METHODS = new Set(['GET', 'HEAD'])
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])
const REQUEST_ID = /^[A-Za-z0-9._:/+=-]{1,128}$/

class BodyTooLarge extends Error {
  readonly code = 'SY_BODY_TOO_LARGE'
}

/** Counts a chunked request body and fails the upload once it passes the route's limit. */
class BodyLimit extends Transform {
  private seen = 0
  constructor(private readonly limit: number) { super() }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length
    if (this.seen > this.limit) cb(new BodyTooLarge(`request body exceeds ${this.limit} bytes`))
    else cb(null, chunk)
  }
}

function reject(ex: Exchange, reply: FastifyReply, status: number, reason: string, body: string): FastifyReply {
  ex.deps.metrics.unrouted.labels(reason).inc()
  return plain(reply, status, body)
}

function stripIpv4Mapped(ip: string | undefined): string {
  if (ip === undefined) return ''
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip
}

/** The client address: the peer, or with trusted proxies the right-most untrusted X-Forwarded-For hop. */
function clientAddress(peer: string, rt: Runtime, xff: string | string[] | undefined): { ip: string; trusted: boolean } {
  const trusted = rt.trusted
  if (trusted === undefined || !trusted.check(peer, peer.includes(':') ? 'ipv6' : 'ipv4')) return { ip: peer, trusted: false }
  if (xff === undefined) return { ip: peer, trusted: true }
  const hops = (Array.isArray(xff) ? xff.join(',') : xff).split(',')
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i].trim()
    if (hop === '') continue
    if (!trusted.check(hop, hop.includes(':') ? 'ipv6' : 'ipv4')) return { ip: hop, trusted: true }
  }
  return { ip: peer, trusted: true }
}

function onResponseClose(this: TrackedResponse): void {
  const ex = this[kExchange]
  if (ex === undefined) return
  this[kExchange] = undefined
  const { metrics } = ex.deps
  const route = ex.route
  const poolName = ex.pool?.name ?? ''
  const code = this.writableFinished ? String(this.statusCode) : '499'
  const seconds = (performance.now() - ex.start) / 1000
  metrics.hot.requests.get(route?.name ?? '', poolName, methodLabel(ex.request.method), code).inc()
  if (route !== undefined) {
    metrics.hot.requestDuration.get(route.name, poolName).observe(seconds)
    metrics.hot.inFlight.get(route.name).dec()
  }
  ex.releaseMember()
  if (ex.admitted) (ex.pool as Pool).release()
  // The client went away before the answer was complete: stop the upstream exchange.
  if (!this.writableFinished) ex.abortUpstream?.()
  // RFC 9111 section 4.4: a successful unsafe request invalidates what we cached for its URL.
  if (route?.cache !== undefined && ex.deps.cache !== undefined && !SAFE_METHODS.has(ex.request.method) && this.statusCode < 400 && this.writableFinished) {
    ex.deps.cache.invalidate(ex, ex.location ?? ex.reply?.getHeader('location'), ex.contentLocation ?? ex.reply?.getHeader('content-location'))
  }
  if (ex.deps.accessLog) {
    ex.request.log.info({ reqId: ex.request.id, method: ex.request.method, path: ex.path, route: route?.name, pool: poolName, member: ex.member?.name, code, ms: Math.round(seconds * 1e4) / 10, client: ex.clientIp }, 'access')
  }
}

/** What a try's handler asks of the plugin: retries and the body-limit answer. */
const HOOKS: TryHooks = {
  retryAfterError: (ex, c) => tryAgain(ex, c.kind),
  retryAfterStatus: (ex, status) => (ex.route as RouteRuntime).retryOn.has(status) && tryAgain(ex, `status_${status}`),
  bodyTooLarge: (ex, res) => {
    ex.deps.metrics.unrouted.labels('body_too_large').inc()
    rawPlain(res, 413, `413 Content Too Large: request body exceeds ${ex.route?.maxBodyBytes} bytes\n`, { connection: 'close' })
  }
}

/**
 * Retries on another member when the route allows it, the deadline has room and the pool's
 * retry budget agrees. Returns false when the caller must answer with what it has.
 */
function tryAgain(ex: Exchange, reason: string): boolean {
  const route = ex.route as RouteRuntime
  const pool = ex.pool as Pool
  if (!ex.retryable || ex.tries > route.retries.attempts) return false
  if (ex.deadline > 0 && performance.now() >= ex.deadline) return false
  // A status answer is only retried elsewhere: asking the same member again rarely helps. A failed
  // connection may be retried on the same member when it is the only one (a stale keep-alive socket).
  if (reason.startsWith('status_') && !pool.members.some((m) => m.available && m !== ex.member && !(ex.tried?.has(m) ?? false))) return false
  if (!pool.budget.tryAcquire()) {
    ex.deps.metrics.retryBudgetExhausted.labels(pool.name).inc()
    return false
  }
  ;(ex.tried ??= new Set()).add(ex.member as Member)
  ex.releaseMember()
  ex.deps.metrics.retries.labels(route.name, pool.name, reason).inc()
  forward(ex, ex.request.raw.socket === null ? undefined : (ex.reply as FastifyReply).raw)
  return true
}

/** Takes a max_requests slot, queueing briefly; a full queue or a timed-out wait gets 503 + Retry-After. */
function admitThenForward(ex: Exchange, reply: FastifyReply): FastifyReply | Promise<FastifyReply> {
  const pool = ex.pool as Pool
  const verdict = pool.admit()
  const go = (ok: boolean): FastifyReply => {
    if (!ok) {
      ex.deps.metrics.unrouted.labels('pool_saturated').inc()
      reply.header('retry-after', '1')
      return plain(reply, 503, `503 Service Unavailable: pool ${pool.name}: too many requests in flight, retry shortly\n`)
    }
    if (reply.raw.destroyed) {
      // The client left while queued: give the slot back at once.
      pool.release()
      return reply
    }
    ex.admitted = true
    // From here on the answer is written on the raw response by the try's handler.
    reply.hijack()
    forward(ex, reply.raw)
    return reply
  }
  return verdict === true ? go(true) : verdict === false ? go(false) : verdict.then(go)
}

/** One try: pick a member (not one already tried) and stream the request to it. */
function forward(ex: Exchange, res: ServerResponse | undefined): void {
  if (res === undefined || res.destroyed) return
  const pool = ex.pool as Pool
  const member = ex.pickMember()
  if (member === undefined) {
    ex.recordUpstreamError(NO_MEMBER)
    rawPlain(res, 503, upstreamErrorBody(pool.name, NO_MEMBER))
    return
  }
  if (ex.tries++ === 0) pool.budget.recordRequest()
  const route = ex.route as RouteRuntime
  let timeout = route.retries.per_try_timeout_ms ?? pool.requestTimeoutMs
  if (ex.deadline > 0) {
    const left = Math.floor(ex.deadline - performance.now())
    if (left <= 0) {
      const c = classifyUpstreamError({ code: 'UND_ERR_HEADERS_TIMEOUT' })
      ex.recordUpstreamError(c)
      rawPlain(res, 504, upstreamErrorBody(pool.name, c))
      return
    }
    timeout = Math.min(timeout, left)
  }
  const method = ex.request.method
  const body = BODYLESS_METHODS.has(method) ? null : (ex.body ?? (ex.request.body as Readable | undefined) ?? null)
  const handler = new ForwardHandler(ex, res, HOOKS)
  ex.abortUpstream = () => handler.abort()
  ex.deps.dispatcher.dispatch(member.origin, dispatchOptions(ex, body, timeout), handler)
}

/**
 * The request path: route table -> split -> [cache] -> balancer -> a streamed undici dispatch to
 * the member (routing/forwarder.ts). Bodies stream both ways; nothing is buffered.
 */
export async function proxyPlugin(app: FastifyInstance, deps: ProxyDeps): Promise<void> {
  app.decorateRequest('switchyard', null)
  // Never parse bodies: every content type passes through as the raw stream.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload))

  const handler = (request: FastifyRequest, reply: FastifyReply): FastifyReply | Promise<FastifyReply> => {
    const rt = deps.runtime()
    const raw = request.raw
    const ex = new Exchange(performance.now(), request, deps, rt)
    request.switchyard = ex
    ex.reply = reply
    const res = reply.raw as TrackedResponse
    res[kExchange] = ex
    res.once('close', onResponseClose)

    const method = request.method
    if (method === 'TRACE' || method === 'CONNECT') {
      reply.header('allow', 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS')
      return reject(ex, reply, 405, 'method_not_allowed', `405 Method Not Allowed: ${method} is not proxied\n`)
    }

    let url = raw.url ?? '/'
    let hostHeader = request.headers.host
    if (url.charCodeAt(0) !== 47) {
      // absolute-form (RFC 9112 section 3.2.2): the target's authority replaces Host.
      let abs: URL | undefined
      try { abs = /^https?:\/\//i.test(url) ? new URL(url) : undefined } catch { abs = undefined }
      if (abs === undefined) return reject(ex, reply, 400, 'bad_path', '400 Bad Request: unsupported request target\n')
      hostHeader = abs.host
      url = abs.pathname + abs.search
    }
    const host = normalizeHost(hostHeader)
    if (host === undefined || hasDuplicateHost(raw.rawHeaders)) return reject(ex, reply, 400, 'bad_host', '400 Bad Request: missing, repeated or invalid Host header\n')

    const q = url.indexOf('?')
    const n = normalizePath(q < 0 ? url : url.slice(0, q))
    if (!n.ok) return reject(ex, reply, 400, 'bad_path', `400 Bad Request: ${n.reason}\n`)
    ex.path = n.path
    ex.host = host
    ex.authority = hostHeader as string
    ex.query = q < 0 ? '' : url.slice(q)

    const route = rt.table.match(host, n.path, method, request.headers)
    if (route === undefined) return reject(ex, reply, 404, 'no_route', '404 Not Found: no route matches this host and path\n')
    ex.route = route
    deps.metrics.hot.inFlight.get(route.name).inc()

    const peer = stripIpv4Mapped(raw.socket.remoteAddress)
    ex.peerIp = peer
    if (rt.trusted === undefined) {
      ex.clientIp = peer
    } else {
      const c = clientAddress(peer, rt, request.headers['x-forwarded-for'])
      ex.clientIp = c.ip
      ex.trustedPeer = c.trusted
    }

    const len = request.headers['content-length']
    if (len !== undefined && Number(len) > route.maxBodyBytes) {
      reply.header('connection', 'close')
      return reject(ex, reply, 413, 'body_too_large', `413 Content Too Large: request body exceeds ${route.maxBodyBytes} bytes\n`)
    }
    if (len === undefined && request.body != null && typeof (request.body as Readable).pipe === 'function') {
      request.body = (request.body as Readable).pipe(new BodyLimit(route.maxBodyBytes))
    }

    let pool = route.pool
    if (route.split !== undefined) {
      const s = route.split
      const h = request.headers
      const a = s.assign(
        h[s.overrideHeader] as string | undefined,
        readSplitCookie(h.cookie, s.cookieName),
        s.stickyHeader === undefined ? undefined : (h[s.stickyHeader] as string | undefined)
      )
      pool = a.variant.target
      ex.variant = a.variant.name
      if (a.source === 'new') ex.setCookie = a.variant.setCookie
      deps.metrics.splitAssignments.labels(s.name, a.variant.name, a.source).inc()
    }
    ex.pool = pool as Pool
    if (route.cache !== undefined && deps.cache !== undefined) {
      const handled = deps.cache.handle(ex, reply)
      if (handled !== undefined) return handled
    }
    if (route.timeoutMs > 0) ex.deadline = ex.start + route.timeoutMs
    if (route.retries.attempts > 0 && route.retryMethods.has(method)) {
      // RFC 9112 section 6.3: without Content-Length or Transfer-Encoding a request has no body.
      const bodyLen = len === undefined ? (BODYLESS_METHODS.has(method) || request.headers['transfer-encoding'] === undefined ? 0 : -1) : Number(len)
      if (bodyLen === 0 || BODYLESS_METHODS.has(method)) {
        ex.retryable = true
      } else if (bodyLen > 0 && bodyLen <= route.retries.buffer_body_bytes && request.body != null) {
        // Small body: hold it so a retry can replay it; larger ones are never replayed.
        ex.retryable = true
        return readAll(request.body as Readable, bodyLen).then((buf) => {
          ex.body = buf
          return admitThenForward(ex, reply)
        }, () => plain(reply, 400, '400 Bad Request: request body ended early\n'))
      }
    }
    return admitThenForward(ex, reply)
  }

  // Proxy every method Node's parser accepts (WebDAV and friends too), except CONNECT: we never tunnel.
  for (const m of METHODS) {
    if (m !== 'CONNECT' && !app.supportedMethods.includes(m)) app.addHttpMethod(m, { hasBody: true })
  }
  app.route({
    method: app.supportedMethods.filter((m) => m !== 'CONNECT'),
    url: '/*',
    handler
  })
  app.setNotFoundHandler((request, reply) => {
    // Only reached for methods Fastify does not route (e.g. an unknown extension method).
    reply.header('connection', 'close')
    return plain(reply, 501, `501 Not Implemented: method ${request.method} is not supported\n`)
  })
}

/** RFC 9112 section 3.2: exactly one Host field. Node keeps the first of several; we refuse. */
function hasDuplicateHost(raw: string[]): boolean {
  let seen = false
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (seen) return true
      seen = true
    }
  }
  return false
}

function readAll(stream: Readable, expected: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let n = 0
    stream.on('data', (c: Buffer) => { chunks.push(c); n += c.length })
    stream.once('end', () => (n === expected ? resolve(Buffer.concat(chunks, n)) : reject(new Error('short body'))))
    stream.once('error', reject)
  })
}

function readSplitCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined || !header.includes(name)) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID()
}
