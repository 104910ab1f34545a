/**
 * The shared HTTP cache in front of cache-enabled routes (RFC 9111 via http-cache-semantics,
 * never hand-written freshness rules). One instance per app; the store is memory or Redis.
 *
 * Flow for a GET/HEAD on a caching route:
 *   lookup -> fresh: serve (HIT) | stale within stale-while-revalidate: serve (STALE) and refresh
 *   once in the background | stale: conditional request upstream, 304 refreshes the entry
 *   (REVALIDATED), an error within stale-if-error serves it (STALE) | nothing: fetch (MISS),
 *   concurrent misses for one key collapsed into one upstream request.
 * Cache fills talk to the member through the same undici pools as the forwarder, so the response
 * can be teed into the store while it streams to the client.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import CachePolicy from 'http-cache-semantics'
import type { FastifyReply } from 'fastify'
import type { Logger } from 'pino'
import { NO_MEMBER, upstreamErrorBody, type ClassifiedError } from '../errors.js'
import type { Exchange } from '../routing/exchange.js'
import { plain } from '../routing/exchange.js'
import { normalizeAuthority } from '../routing/route-table.js'
import type { RouteCacheConfig } from '../config/schema.js'
import { notModified, notModifiedHeaders } from './conditional.js'
import type { CacheMetrics } from './cache-metrics.js'
import { cacheKey, type CacheKey } from './cache-key.js'
import type { CacheEntry, CacheStore } from './store.js'

type Headers = Record<string, string | string[] | undefined>

/** What we keep next to the body: the serialised policy and, for operators, the URL. */
interface Meta {
  v: 1
  policy: CachePolicy.CachePolicyObject
  url: string
}

interface Stored {
  policy: CachePolicy
  body: Buffer
}

/** Result of a cache fill that other requests for the same key waited on. */
type Shared = { kind: 'stored'; stored: Stored } | { kind: 'pass' }

export interface HttpCacheDeps {
  store: CacheStore
  metrics: CacheMetrics
  log: Logger
}

const POLICY_OPTIONS = { shared: true, cacheHeuristic: 0.1, immutableMinTimeToLive: 24 * 3600 * 1000 }
/** Keep entries with a validator this long past their usable lifetime, for cheap 304 revalidation. */
const REVALIDATION_GRACE_MS = 10 * 60 * 1000
/** Conditional and range request fields we do not forward on a cache fill: we answer them ourselves. */
const CLIENT_CONDITIONALS = ['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range']
const SAFE = new Set(['GET', 'HEAD'])
const PARSED_POLICIES = 4096

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v
}

export class HttpCache {
  private readonly inflight = new Map<string, Promise<Shared>>()
  private readonly refreshing = new Set<string>()
  private readonly parsed = new Map<string, CachePolicy>()
  private readonly keys = new Map<string, CacheKey>()
  readonly store: CacheStore

  constructor(private readonly deps: HttpCacheDeps) {
    this.store = deps.store
  }

  /**
   * Serves a request on a caching route, or returns undefined to let the plain proxy path
   * forward it (unsafe methods, Range requests, requests the route's policy bypasses).
   */
  handle(ex: Exchange, reply: FastifyReply): Promise<FastifyReply> | undefined {
    const req = ex.request
    const cfg = (ex.route as { cache: RouteCacheConfig }).cache
    if (!cfg.enabled || !SAFE.has(req.method) || req.headers.range !== undefined) return undefined
    if (cfg.cookies === 'bypass' && hasForeignCookie(req.headers.cookie, ex)) {
      this.count(ex, 'bypass')
      ex.cacheStatus = 'BYPASS'
      return undefined
    }
    return this.serve(ex, reply, cfg)
  }

  /** After a successful unsafe request: drop what we hold for its URL and Location (RFC 9111 section 4.4). */
  invalidate(ex: Exchange, location: unknown, contentLocation: unknown): void {
    const cfg = (ex.route as { cache: RouteCacheConfig }).cache
    const targets: [string, string][] = [[ex.path, ex.query]]
    for (const l of [location, contentLocation]) {
      if (typeof l !== 'string') continue
      let u: URL
      try { u = new URL(l, `http://${ex.authority}`) } catch { continue }
      // Only same-origin locations (RFC 9111 section 4.4: a cache MUST NOT invalidate other origins).
      if (normalizeAuthority(u.host)?.authority !== ex.authority) continue
      targets.push([u.pathname, u.search])
    }
    // Every pool's copy: the variants of a split store the same URL once per pool.
    for (const pool of ex.rt.pools.keys()) {
      for (const [path, query] of targets) void this.deps.store.delete(this.primaryKey(ex, path, query, cfg, pool))
    }
  }

  private count(ex: Exchange, result: string): void {
    this.deps.metrics.lookups.labels(ex.route?.name ?? '', result).inc()
  }

  private primaryKey(ex: Exchange, path: string, query: string, cfg: RouteCacheConfig, pool = ex.pool?.name ?? ''): CacheKey {
    // The pool is part of the key (split variants answer one URL differently). Forwarding headers
    // from trusted proxies reach the origin as sent: an origin that varies on them says so with
    // Vary, which the store keys on; from anyone else they are replaced by ours (constant).
    const partition = cachePartition(pool)
    // The SHA-256 of a key costs more than the rest of a memory hit's lookup: remember recent ones.
    const memo = `${ex.route?.name ?? ""}\u0000${partition}\u0000${ex.authority}\u0000${path}\u0000${query}`
    let key = this.keys.get(memo)
    if (key === undefined) {
      key = cacheKey({ scheme: 'http', host: ex.authority, path, query: keyedQuery(query, cfg.query).slice(1), partition })
      if (this.keys.size >= PARSED_POLICIES) this.keys.clear()
      this.keys.set(memo, key)
    }
    return key
  }

  /** The request as http-cache-semantics sees it: our normalised URL and host, the client's headers. */
  private policyRequest(ex: Exchange): CachePolicy.Request {
    // The URL as keyed (ignored query parameters left out), so equivalent requests match.
    const rule = (ex.route as { cache: RouteCacheConfig }).cache.query
    return { url: ex.path + keyedQuery(ex.query, rule), method: 'GET', headers: { ...ex.request.headers, host: ex.authority } as CachePolicy.Headers }
  }

  private async lookup(ex: Exchange, key: CacheKey): Promise<Stored | undefined> {
    const got = await this.deps.store.get(key, ex.request.headers)
    if (got === undefined) return undefined
    // Parsing the stored policy is most of a hit's cost: keep recent ones (policies are not mutated).
    let policy = this.parsed.get(got.meta)
    if (policy === undefined) {
      const meta = parseMeta(got)
      if (meta === undefined) return undefined
      policy = CachePolicy.fromObject(meta.policy)
      if (this.parsed.size >= PARSED_POLICIES) this.parsed.clear()
      this.parsed.set(got.meta, policy)
    }
    return { policy, body: got.body }
  }

  private async serve(ex: Exchange, reply: FastifyReply, cfg: RouteCacheConfig): Promise<FastifyReply> {
    const primary = this.primaryKey(ex, ex.path, ex.query, cfg)
    const flight = `${primary.digest}|${variantHint(ex)}`
    const preq = this.policyRequest(ex)
    let stored: Stored | undefined
    try {
      stored = await this.lookup(ex, primary)
    } catch (err) {
      this.count(ex, 'error')
      this.deps.log.warn({ err }, 'cache lookup failed; serving from upstream')
    }
    if (stored !== undefined) {
      const ev = stored.policy.evaluateRequest(preq)
      if (ev.response !== undefined && ev.revalidation === undefined) {
        this.count(ex, 'hit')
        return this.sendStored(ex, reply, stored, ev.response.headers as Headers, 'HIT', 'hit')
      }
      if (ev.response !== undefined && ev.revalidation !== undefined && !ev.revalidation.synchronous) {
        this.count(ex, 'stale')
        this.refreshInBackground(ex, primary, stored, cfg)
        return this.sendStored(ex, reply, stored, ev.response.headers as Headers, 'STALE', 'hit; detail=stale-while-revalidate')
      }
      if (ev.revalidation !== undefined && hasValidator(stored.policy)) {
        return this.revalidate(ex, reply, primary, stored, validatorsOf(stored.policy), cfg)
      }
    }
    return this.fill(ex, reply, primary, flight, cfg, stored)
  }

  private sendStored(ex: Exchange, reply: FastifyReply, stored: Stored, headers: Headers, xcache: string, status: string): FastifyReply {
    ex.cacheStatus = xcache
    const h = ex.clientHeaders(headers)
    h['x-cache'] = xcache
    h['cache-status'] = `switchyard; ${status}`
    if (notModified(ex.request.headers as Headers, headers)) {
      const nm = notModifiedHeaders(headers) as Record<string, string | string[]>
      nm['x-cache'] = xcache
      nm['cache-status'] = h['cache-status'] as string
      nm.via = h.via as string
      nm['x-request-id'] = ex.request.id
      return reply.code(304).headers(nm).send()
    }
    // A hit is written straight on the socket: Fastify's send pipeline (onSend hooks, payload
    // type checks) costs more than the rest of a memory hit.
    h['content-length'] = stored.body.length
    reply.hijack()
    const res = reply.raw
    res.writeHead((stored.policy as unknown as { status(): number }).status(), h)
    res.end(stored.body)
    return reply
  }

  /** A conditional request for a stale entry; 304 refreshes it, an error may serve it stale. */
  private async revalidate(ex: Exchange, reply: FastifyReply, primary: CacheKey, stored: Stored, condHeaders: Headers, cfg: RouteCacheConfig): Promise<FastifyReply> {
    const member = ex.pickMember()
    if (member === undefined) {
      ex.recordUpstreamError(NO_MEMBER)
      return this.staleOnError(ex, reply, stored, undefined) ?? plain(reply, 503, upstreamErrorBody((ex.pool as { name: string }).name, NO_MEMBER))
    }
    let res
    try {
      res = await ex.deps.dispatcher.fetch(member.origin, this.fillRequest(ex, condHeaders))
    } catch (err) {
      return this.staleOnError(ex, reply, stored, err) ?? ex.failUpstream(reply, err)
    }
    ex.observeUpstream()
    if (res.statusCode === 304) {
      res.body.resume()
      const { policy, modified, matches } = stored.policy.revalidatedPolicy(this.policyRequest(ex), { status: 304, headers: res.headers as CachePolicy.Headers })
      if (!modified && matches) {
        const updated: Stored = { policy, body: stored.body }
        this.count(ex, 'revalidated')
        void this.write(primary, updated, ex, res.headers.vary ?? (policy.responseHeaders() as Headers).vary)
        return this.sendStored(ex, reply, updated, policy.responseHeaders() as Headers, 'REVALIDATED', 'hit; fwd=stale; fwd-status=304')
      }
      // A 304 that does not match what we hold (RFC 9111 section 4.3.4) tells us nothing usable:
      // fetch the representation unconditionally.
      ex.releaseMember()
      return this.fill(ex, reply, primary, `${primary.digest}|${variantHint(ex)}`, cfg, undefined)
    }
    if (res.statusCode >= 500) {
      const served = this.staleOnError(ex, reply, stored, undefined, res.statusCode)
      if (served !== undefined) { res.body.resume(); return served }
    }
    this.count(ex, 'miss')
    return this.respondAndStore(ex, reply, primary, cfg, res, 'MISS', 'fwd=stale')
  }

  /** stale-if-error (RFC 5861): serve the stale entry when the origin failed, if it allows. */
  private staleOnError(ex: Exchange, reply: FastifyReply, stored: Stored, err: unknown, status?: number): FastifyReply | undefined {
    // revalidatedPolicy hands back the same policy, unmodified, exactly when stale-if-error allows it.
    let same = false
    try {
      const r = stored.policy.revalidatedPolicy(this.policyRequest(ex), { status: status ?? 502, headers: {} })
      same = !r.modified && r.policy === stored.policy
    } catch { same = false }
    if (!same) return undefined
    const policy = stored.policy
    if (err !== undefined) ex.request.log.warn({ err, pool: ex.pool?.name }, 'upstream failed; serving stale entry (stale-if-error)')
    this.count(ex, 'stale')
    return this.sendStored(ex, reply, stored, policy.responseHeaders() as Headers, 'STALE', `hit; fwd=stale; detail=stale-if-error`)
  }

  /** A miss (or an entry we cannot revalidate): one upstream request per key at a time. */
  private async fill(ex: Exchange, reply: FastifyReply, primary: CacheKey, flight: string, cfg: RouteCacheConfig, stale: Stored | undefined): Promise<FastifyReply> {
    const pending = this.inflight.get(flight)
    if (pending !== undefined) {
      const shared = await pending
      if (shared.kind === 'stored' && shared.stored.policy.satisfiesWithoutRevalidation(this.policyRequest(ex))) {
        this.count(ex, 'hit')
        return this.sendStored(ex, reply, shared.stored, shared.stored.policy.responseHeaders() as Headers, 'HIT', 'hit; detail=collapsed')
      }
      // Not shareable (or not for this request's Vary): go upstream ourselves.
    }
    let settle: (s: Shared) => void = () => {}
    const leader = pending === undefined
    if (leader) this.inflight.set(flight, new Promise<Shared>((resolve) => { settle = resolve }))
    // Waiters get the result at once; the key stays claimed until the entry is in the store, so
    // a request arriving meanwhile is served the same answer instead of missing again.
    let finished = false
    const finish = (s: Shared, stored?: Promise<void>): void => {
      if (!leader || finished) return
      finished = true
      settle(s)
      if (stored === undefined) this.inflight.delete(flight)
      else void stored.finally(() => this.inflight.delete(flight))
    }
    const member = ex.pickMember()
    if (member === undefined) {
      finish({ kind: 'pass' })
      ex.recordUpstreamError(NO_MEMBER)
      if (stale !== undefined) {
        const served = this.staleOnError(ex, reply, stale, undefined)
        if (served !== undefined) return served
      }
      return plain(reply, 503, upstreamErrorBody((ex.pool as { name: string }).name, NO_MEMBER))
    }
    let res
    try {
      res = await ex.deps.dispatcher.fetch(member.origin, this.fillRequest(ex, undefined))
    } catch (err) {
      finish({ kind: 'pass' })
      if (stale !== undefined) {
        const served = this.staleOnError(ex, reply, stale, err)
        if (served !== undefined) return served
      }
      return ex.failUpstream(reply, err)
    }
    try {
      ex.observeUpstream()
      this.count(ex, 'miss')
      return this.respondAndStore(ex, reply, primary, cfg, res, stale === undefined ? 'MISS' : 'EXPIRED', stale === undefined ? 'fwd=miss' : 'fwd=stale', finish)
    } catch (err) {
      // Never leave the key claimed: waiters would hang on it forever.
      finish({ kind: 'pass' })
      res.body.on('error', () => {}).destroy()
      throw err
    }
  }

  private fillRequest(ex: Exchange, conditional: Headers | undefined): { path: string; method: 'GET' | 'HEAD'; headers: Record<string, string | string[]>; timeoutMs: number } {
    const headers = ex.upstreamHeaders()
    for (const h of CLIENT_CONDITIONALS) delete headers[h]
    if (conditional !== undefined) {
      const inm = first(conditional['if-none-match'])
      const ims = first(conditional['if-modified-since'])
      if (inm !== undefined) headers['if-none-match'] = inm
      if (ims !== undefined) headers['if-modified-since'] = ims
    }
    // Fill with GET even for a HEAD, so the entry has a body for later GETs.
    return { path: ex.path + ex.query, method: 'GET', headers, timeoutMs: (ex.pool as { requestTimeoutMs: number }).requestTimeoutMs }
  }

  /** Streams the upstream response to the client, teeing it into the store when storable. */
  private respondAndStore(
    ex: Exchange, reply: FastifyReply, primary: CacheKey, cfg: RouteCacheConfig,
    res: { statusCode: number; headers: IncomingHttpHeaders; body: Readable },
    xcache: string, status: string, finish: (s: Shared, stored?: Promise<void>) => void = () => {}
  ): FastifyReply {
    // A default TTL is the route's guess, never permission to share an authorized answer (RFC 9111 section 3.5).
    if (res.statusCode < 200 || res.statusCode > 599) {
      res.body.on('error', () => {}).destroy()
      finish({ kind: 'pass' })
      const c: ClassifiedError = { kind: 'protocol', status: 502, reason: 'upstream sent an invalid response' }
      ex.recordUpstreamError(c)
      return plain(reply, 502, upstreamErrorBody((ex.pool as { name: string }).name, c))
    }
    const resHeaders = ex.request.headers.authorization === undefined ? withDefaultTtl(res.headers as Headers, cfg.default_ttl_s) : res.headers as Headers
    const policy = new CachePolicy(this.policyRequest(ex), { status: res.statusCode, headers: resHeaders as CachePolicy.Headers }, POLICY_OPTIONS)
    const length = Number(first(res.headers['content-length']) ?? NaN)
    const storable = policy.storable() &&
      (cfg.share_set_cookie || res.headers['set-cookie'] === undefined) &&
      !(Number.isFinite(length) && length > cfg.max_entry_bytes) &&
      // Worth keeping while fresh, or, with a validator, for cheap 304 revalidation later.
      (policy.timeToLive() > 0 || hasResponseValidator(res.headers as Headers))
    const h = ex.clientHeaders(res.headers as Headers)
    h['x-cache'] = xcache
    // "stored" only when the size is known to fit; a chunked body may still turn out too large.
    h['cache-status'] = `switchyard; ${status}${storable && Number.isFinite(length) ? '; stored' : ''}`
    ex.cacheStatus = xcache
    if (!storable) {
      finish({ kind: 'pass' })
      return reply.code(res.statusCode).headers(h).send(ex.request.method === 'HEAD' ? (res.body.resume(), undefined) : res.body)
    }
    const chunks: Buffer[] = []
    let size = 0
    let tooBig = false
    res.body.on('data', (c: Buffer) => {
      if (tooBig) return
      size += c.length
      if (size > cfg.max_entry_bytes) { tooBig = true; chunks.length = 0; return }
      chunks.push(c)
    })
    res.body.once('end', () => {
      if (tooBig) { finish({ kind: 'pass' }); return }
      const stored: Stored = { policy, body: Buffer.concat(chunks, size) }
      finish({ kind: 'stored', stored }, this.write(primary, stored, ex, res.headers.vary))
    })
    res.body.once('error', () => finish({ kind: 'pass' }))
    // Destroyed without an error (the client went away): release the key too.
    res.body.once('close', () => finish({ kind: 'pass' }))
    if (ex.request.method === 'HEAD') {
      res.body.resume()
      return reply.code(res.statusCode).headers(h).send()
    }
    return reply.code(res.statusCode).headers(h).send(res.body)
  }

  private async write(key: CacheKey, stored: Stored, ex: Exchange, vary: string | string[] | undefined): Promise<void> {
    const ttl = stored.policy.timeToLive() + (hasValidator(stored.policy) ? REVALIDATION_GRACE_MS : 0)
    if (ttl <= 0) return
    const meta: Meta = { v: 1, policy: stored.policy.toObject(), url: `${ex.host}${ex.path}${ex.query}` }
    // The store never rejects on the request path; a failed write is counted by its hooks.
    await this.deps.store.set(key, vary, ex.request.headers, { meta: JSON.stringify(meta), body: stored.body }, ttl)
  }

  /** stale-while-revalidate: one background refresh per key at a time. */
  private refreshInBackground(ex: Exchange, primary: CacheKey, stored: Stored, cfg: RouteCacheConfig): void {
    const flight = `${primary.digest}|${variantHint(ex)}`
    if (this.refreshing.has(flight)) return
    this.refreshing.add(flight)
    const pool = ex.pool
    const member = pool?.pick(ex.request.headers, ex.clientIp)
    if (member === undefined) { this.refreshing.delete(flight); return }
    const preq = this.policyRequest(ex)
    const req = this.fillRequest(ex, validatorsOf(stored.policy))
    member.inFlight++
    void ex.deps.dispatcher.fetch(member.origin, req).then(async (res) => {
      if (res.statusCode === 304) {
        res.body.resume()
        const { policy, modified, matches } = stored.policy.revalidatedPolicy(preq, { status: 304, headers: res.headers as CachePolicy.Headers })
        if (!modified && matches) await this.write(primary, { policy, body: stored.body }, ex, res.headers.vary ?? (policy.responseHeaders() as Headers).vary)
        return
      }
      const policy = new CachePolicy(preq, { status: res.statusCode, headers: res.headers as CachePolicy.Headers }, POLICY_OPTIONS)
      const declared = Number(first(res.headers['content-length']) ?? NaN)
      if (Number.isFinite(declared) && declared > cfg.max_entry_bytes) { res.body.destroy(); return }
      const body = await readCapped(res.body, cfg.max_entry_bytes)
      if (body === undefined) return
      if (policy.storable() && (cfg.share_set_cookie || res.headers['set-cookie'] === undefined) && body.length <= cfg.max_entry_bytes) {
        await this.write(primary, { policy, body }, ex, res.headers.vary)
      }
    }).catch((err: unknown) => {
      this.deps.log.warn({ err, pool: pool?.name }, 'background revalidation failed')
    }).finally(() => {
      member.inFlight--
      this.refreshing.delete(flight)
    })
  }
}

/** Reads a body up to `max` bytes; undefined (and the stream destroyed) when it is larger. */
async function readCapped(body: Readable, max: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of body) {
    n += (c as Buffer).length
    if (n > max) { body.destroy(); return undefined }
    chunks.push(c as Buffer)
  }
  return Buffer.concat(chunks, n)
}

/** The key partition of a response: the pool that served it, and trusted forwarding headers. */
export function cachePartition(pool: string): string {
  return `${pool}|`
}

function parseMeta(e: CacheEntry): Meta | undefined {
  try {
    const m = JSON.parse(e.meta) as Meta
    return m.v === 1 && m.policy !== undefined ? m : undefined
  } catch {
    return undefined
  }
}

function hasValidator(p: CachePolicy): boolean {
  return hasResponseValidator(p.responseHeaders() as Headers)
}

/** The conditional fields a cache sends to revalidate its own entry (RFC 9111 section 4.3.1). */
function validatorsOf(p: CachePolicy): Headers {
  const h = p.responseHeaders() as Headers
  const out: Headers = {}
  if (h.etag !== undefined) out['if-none-match'] = h.etag
  if (h['last-modified'] !== undefined) out['if-modified-since'] = h['last-modified']
  return out
}

function hasResponseValidator(h: Headers): boolean {
  return h.etag !== undefined || h['last-modified'] !== undefined
}

/**
 * Concurrent misses are collapsed per URL and per value of the headers responses commonly
 * vary on, so two clients asking for different encodings are not handed one another's answer.
 */
function variantHint(ex: Exchange): string {
  const h = ex.request.headers
  return `${first(h['accept-encoding']) ?? ''}|${first(h.accept) ?? ''}|${first(h['accept-language']) ?? ''}`
}

/** Only the query parameters the route keys on (RFC 9111 lets a cache choose its key). */
function keyedQuery(query: string, rule: RouteCacheConfig['query']): string {
  if (rule === 'all' || query === '') return rule === 'none' ? '' : query
  if (rule === 'none') return ''
  const params = new URLSearchParams(query.slice(1))
  const kept = new URLSearchParams()
  for (const name of [...rule].sort()) for (const v of params.getAll(name)) kept.append(name, v)
  const s = kept.toString()
  return s === '' ? '' : `?${s}`
}

/**
 * default_ttl_s: when the origin gave no freshness information at all, let a shared cache keep
 * the response that long by adding s-maxage (only shared caches read it).
 */
function withDefaultTtl(h: Headers, ttl: number): Headers {
  if (ttl <= 0) return h
  const cc = first(h['cache-control'])
  if (h.expires !== undefined || (cc !== undefined && /max-age|s-maxage|no-cache|no-store|private/i.test(cc))) return h
  return { ...h, 'cache-control': cc === undefined ? `s-maxage=${ttl}` : `${cc}, s-maxage=${ttl}` }
}

/** A Cookie header with anything besides the proxy's own split cookies. */
function hasForeignCookie(cookie: string | undefined, ex: Exchange): boolean {
  if (cookie === undefined || cookie === '') return false
  const own = ex.route?.split?.cookieName
  for (const part of cookie.split(';')) {
    const name = part.slice(0, part.indexOf('=') < 0 ? undefined : part.indexOf('=')).trim()
    if (name !== '' && name !== own) return true
  }
  return false
}
