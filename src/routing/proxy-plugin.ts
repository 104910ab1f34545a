import { randomUUID } from 'node:crypto'
import { METHODS, STATUS_CODES, type ServerResponse } from 'node:http'
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { classifyUpstreamError, NO_MEMBER, upstreamErrorBody } from '../errors.js'
import { methodLabel } from '../metrics/proxy-metrics.js'
import type { Member } from '../upstreams/member.js'
import type { Pool } from '../upstreams/pool.js'
import { Exchange, plain, type ProxyDeps } from './exchange.js'
import { ForwardHandler, dispatchOptions, rawPlain, type TryHooks } from './forwarder.js'
import { normalizeAuthority } from './route-table.js'
import { readCookie } from '../balancing/cookie.js'
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
/** Header fields a request may carry (Node silently drops those beyond its maxHeadersCount). */
const MAX_FIELDS = 200
const ABSOLUTE_FORM = /^(https?):\/\/([^/?#]*)(.*)$/i
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
  clearTimeout(ex.bodyTimer)
  ex.releaseMember()
  if (ex.admitted) (ex.pool as Pool).release()
  // The client went away before the answer was complete: stop the upstream exchange.
  if (!this.writableFinished) ex.abortUpstream?.()
  // RFC 9111 section 4.4: a successful unsafe request invalidates what we cached for its URL.
  if (route?.cache !== undefined && ex.deps.cache !== undefined && !SAFE_METHODS.has(ex.request.method) && this.statusCode < 400 && this.writableFinished) {
    ex.deps.cache.invalidate(ex, ex.location, ex.contentLocation)
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
  forward(ex, (ex.reply as FastifyReply).raw)
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
function forward(ex: Exchange, res: ServerResponse): void {
  if (res.destroyed) return
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
  const raw = ex.request.raw
  const limit = ex.rt.config.limits.request_timeout_ms
  if (body !== null && !Buffer.isBuffer(body) && !raw.complete && limit > 0 && ex.bodyTimer === undefined) {
    // A body that trickles in must not hold a member's connection for minutes (slowloris on bodies).
    ex.bodyTimer = setTimeout(() => {
      if (raw.complete) return
      ex.request.log.info({ route: ex.route?.name }, 'request body too slow; closing')
      ex.abortUpstream?.()
      rawPlain(res, 408, '408 Request Timeout: the request body did not arrive in time\n', { connection: 'close' })
      raw.socket?.destroy()
    }, Math.max(1, limit - (performance.now() - ex.start)))
    raw.once('end', () => clearTimeout(ex.bodyTimer))
  }
  ex.deps.dispatcher.dispatch(member.origin, dispatchOptions(ex, body, timeout), handler)
}

/**
 * The request path: route table -> split -> [cache] -> balancer -> a streamed undici dispatch to
 * the member (routing/forwarder.ts). Bodies stream both ways; nothing is buffered.
 */
export async function proxyPlugin(app: FastifyInstance, deps: ProxyDeps): Promise<void> {
  app.decorateRequest('switchyard', null)
  // CONNECT never reaches a route (Node emits it on the server): refuse it rather than hang up.
  app.server.on('connect', (_req, socket) => {
    socket.end('HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
  })
  // Keep one field more than we accept, so an over-long head is refused instead of truncated.
  app.server.maxHeadersCount = MAX_FIELDS + 1
  // Anything that escapes a request (e.g. a cache fill whose upstream body turns out malformed):
  // a short plain answer, or a cut connection once headers went out; never a stack or JSON.
  app.setErrorHandler((err, request, reply) => {
    const ex = request.switchyard
    const c = classifyUpstreamError(err)
    const status = (err as { statusCode?: number }).statusCode
    if (reply.raw.headersSent) {
      reply.raw.destroy()
      return
    }
    if (c.kind === 'other' && status !== undefined && status >= 400 && status <= 599) {
      // A deliberate answer from a plugin (e.g. under-pressure's 503 with Retry-After): keep it, in plain text.
      if (status === 503) ex?.deps.metrics.unrouted.labels('overloaded').inc()
      return plain(reply, status, `${status} ${STATUS_CODES[status] ?? 'Error'}${status === 503 ? ': overloaded, retry shortly' : ''}\n`)
    }
    request.log.warn({ err, pool: ex?.pool?.name, kind: c.kind }, 'request failed')
    for (const h of Object.keys(reply.getHeaders())) reply.removeHeader(h)
    if (c.kind === 'other') return plain(reply, 500, '500 Internal Server Error\n')
    if (ex !== null) ex.recordUpstreamError(c)
    if (reply.sent) {
      // Fastify considers the reply sent (a stream was handed over) but nothing went out yet.
      rawPlain(reply.raw, c.status, upstreamErrorBody(ex?.pool?.name ?? '', c))
      return
    }
    return plain(reply, c.status, upstreamErrorBody(ex?.pool?.name ?? '', c))
  })
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

    // A framing fault earlier on this connection: requests pipelined behind it are never served.
    if ((raw.socket as ClosingSocket)[kClosing] === true) {
      reply.hijack()
      raw.socket.destroy()
      return reply
    }
    const method = request.method
    if (method === 'TRACE' || method === 'CONNECT') {
      reply.header('allow', 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS')
      return reject(ex, reply, 405, 'method_not_allowed', `405 Method Not Allowed: ${method} is not proxied\n`)
    }

    if (raw.httpVersionMajor !== 1) {
      closeAfter(raw.socket, reply)
      return reject(ex, reply, 505, 'bad_version', '505 HTTP Version Not Supported\n')
    }
    if (raw.httpVersionMinor === 0 && request.headers['transfer-encoding'] !== undefined) {
      // RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message is a framing fault.
      closeAfter(raw.socket, reply)
      return reject(ex, reply, 400, 'bad_framing', '400 Bad Request: Transfer-Encoding in an HTTP/1.0 request\n')
    }
    if (raw.rawHeaders.length > MAX_FIELDS * 2) {
      closeAfter(raw.socket, reply)
      return reject(ex, reply, 431, 'too_many_fields', `431 Request Header Fields Too Large: more than ${MAX_FIELDS} header fields\n`)
    }
    let url = raw.url ?? '/'
    let hostHeader = request.headers.host
    if (url.charCodeAt(0) !== 47) {
      // absolute-form (RFC 9112 section 3.2.2): the target's authority replaces Host. Parsed by
      // hand, so the path gets the same normalisation rules as origin-form (a URL parser would
      // quietly turn backslashes into slashes and clamp dot segments).
      const abs = ABSOLUTE_FORM.exec(url)
      if (abs === null || abs[2].includes('@')) return reject(ex, reply, 400, 'bad_path', '400 Bad Request: unsupported request target\n')
      hostHeader = abs[2]
      url = abs[3] === '' ? '/' : abs[3].charCodeAt(0) === 63 ? `/${abs[3]}` : abs[3]
    }
    const auth = normalizeAuthority(hostHeader)
    if (auth === undefined || hasDuplicateHost(raw.rawHeaders)) return reject(ex, reply, 400, 'bad_host', '400 Bad Request: missing, repeated or invalid Host header\n')
    const host = auth.host

    const q = url.indexOf('?')
    const n = normalizePath(q < 0 ? url : url.slice(0, q))
    if (!n.ok) return reject(ex, reply, 400, 'bad_path', `400 Bad Request: ${n.reason}\n`)
    ex.path = n.path
    ex.host = host
    ex.authority = auth.authority
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
        readCookie(h.cookie, s.cookieName),
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

const kClosing = Symbol('switchyard.closing')
type ClosingSocket = NonNullable<FastifyRequest['raw']['socket']> & { [kClosing]?: boolean }

/** This answer ends the connection; anything pipelined behind the request is dropped unread. */
function closeAfter(socket: FastifyRequest['raw']['socket'], reply: FastifyReply): void {
  ;(socket as ClosingSocket)[kClosing] = true
  reply.header('connection', 'close')
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


export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID()
}
