/**
 * The shared HTTP cache as an interceptor in front of the attempt loop (RFC 9111 via
 * http-cache-semantics, never hand-written freshness rules). One instance per app; the store is
 * memory or Redis.
 *
 * For a GET/HEAD on a caching route:
 *   lookup -> fresh: replayed into the client writer (HIT) | stale within stale-while-revalidate:
 *   replayed (STALE) and refreshed once in the background | stale with a validator: a conditional
 *   exchange, 304 refreshes the entry (REVALIDATED), a failure within stale-if-error replays it
 *   (STALE) | nothing: a fill exchange (MISS), concurrent misses for one key collapsed into one,
 *   in this process and, with a fill lock (Redis store), across every instance sharing the store.
 * Misses, revalidations and background refreshes all run through the attempt loop
 * (routing/attempt-loop.ts), like uncached requests: admission, retries on another member,
 * timeouts and health accounting are the same. CacheSink copies the body into the store as it
 * streams to the client.
 *
 * Compression (a route with `compress`): the stored response stays the identity body. A client
 * that negotiates a coding is served a compressed copy kept beside it (cache-key.ts codedKey:
 * a variant of the same URL, so every purge drops it too), made once: by the fill that
 * compressed its answer anyway (captured from the client writer), or else by the first hit in
 * that coding (in the thread pool, once per process however many hits arrive meanwhile). A copy
 * names the stored response it was made from (Meta.id), so a response replaced while fresh
 * (a no-cache request's fill) never has its old copy served; freshness, 304s and ranges are
 * always decided on the stored response itself.
 */
import { randomUUID } from 'node:crypto'
import type { OutgoingHttpHeaders } from 'node:http'
import CachePolicy from 'http-cache-semantics'
import type { Logger } from 'pino'
import { UPSTREAM_ERRORS, poolDetail, type ProxyError } from '../errors.js'
import { runExchange, type AttemptDeps, type Flow, type ResponseSink, type UpstreamRequest, type UpstreamResponse } from '../routing/attempt-loop.js'
import type { ClientWriter } from '../routing/client-writer.js'
import type { RoutedRequest } from '../routing/request-edge.js'
import { normalizeAuthority } from '../routing/route-table.js'
import { upstreamHeaders } from '../routing/upstream-request.js'
import type { RouteCacheConfig } from '../config/schema.js'
import { notModified, notModifiedHeaders } from './conditional.js'
import type { CacheMetrics } from './cache-metrics.js'
import { ChildCache, FastCounterChild } from '../metrics/label-cache.js'
import { cacheKey, codedKey, sha256Hex, type CacheKey } from './cache-key.js'
import { PASS, addVary, applyCoding, weakEtag, type CompressPolicy } from '../compression/compress-policy.js'
import { encodeBody } from '../compression/encoder.js'
import type { Coding } from '../compression/negotiate.js'
import { keyedQuery } from './keyed-query.js'
import { ifRangeHolds, selectRange } from './range.js'
import { forwardRequest } from '../routing/upstream-request.js'
import { ForwardSink } from '../routing/forward-sink.js'
import { forClient, forLibrary, mustRevalidate, requestForLibrary, storedStatus, type RuleOptions } from './response-rules.js'
import type { CacheEntry, CacheStore } from './store.js'
import { responseTags } from './tags.js'
import { HitHeaders } from './hit-headers.js'
import type { FillLock } from './fill-lock.js'

type Headers = Record<string, string | string[] | undefined>

/**
 * What we keep next to the body: the serialised policy and, for operators, the URL; the id of
 * this body (its compressed copies name it) and the Vary names it was stored under (its copies
 * are stored under the same, see cache-key.ts). Entries written before compression existed
 * have neither: the id is then derived from the meta, the names from the stored fields.
 */
interface Meta {
  v: 1
  policy: CachePolicy.CachePolicyObject
  url: string
  id?: string
  vary?: string
}

interface Stored {
  readonly policy: CachePolicy
  readonly body: Buffer
  /** Names this body (kept across 304 refreshes, new for every new body). */
  readonly id: string
  /** The Vary names it is stored under (keyVary). */
  readonly vary: string
  /** The policy's header memo (hit-headers.ts), when it has one. */
  readonly hits?: HitHeaders
}

/** A parsed meta, remembered by its text. */
interface Parsed {
  readonly policy: CachePolicy
  readonly id: string
  readonly vary: string
  readonly hits: HitHeaders | undefined
}

/** Result of a cache fill that other requests for the same key waited on. */
type Shared = { kind: 'stored'; stored: Stored } | { kind: 'pass' }

/** A fill in progress: `settled` once the answer is known, `written` while its store write runs. */
interface Flight {
  promise: Promise<Shared>
  settled: Shared | undefined
  written: Promise<void> | undefined
}

export interface HttpCacheDeps {
  store: CacheStore
  metrics: CacheMetrics
  log: Logger
  /** Collapses misses across instances sharing a Redis store (absent: within this process only). */
  lock?: FillLock
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

/** Where a fill's answer goes, and what it was asked for. */
interface FillContext {
  readonly routed: RoutedRequest
  readonly cfg: RouteCacheConfig
  readonly primary: CacheKey
  readonly deps: AttemptDeps
  readonly dropUnderscores: boolean
  /** The client's writer; undefined for a background refresh. */
  readonly writer: ClientWriter | undefined
  /** The entry being revalidated or replaced (for 304s and stale-if-error). */
  readonly stale: Stored | undefined
  /** The exchange carried the stale entry's validators. */
  readonly conditional: boolean
  /** X-Cache and Cache-Status "fwd" of a relayed answer. */
  readonly xcache: string
  readonly fwd: string
  /** Settles the collapsed-miss flight this fill leads (no-op for others). */
  readonly finish: (s: Shared, stored?: Promise<void>) => void
}

/**
 * What every fill of one request shares. `again`: the request already looked twice (waited for
 * a fill's write once); `writesBefore`: the write count when its lookup started.
 */
type FillBase = Pick<FillContext, 'routed' | 'cfg' | 'primary' | 'deps' | 'dropUnderscores'> & { readonly again: boolean; readonly writesBefore: number }

const NO_FLIGHT = (): void => {}
/** RFC 9211 section 2.2: fwd=request, forwarded because of the request's semantics (a Range we cannot serve). */
const RANGE_PASSED = { 'x-cache': 'MISS', 'cache-status': 'switchyard; fwd=request' }

export class HttpCache {
  /** Fills in progress by key; `settled` once the answer is known (its store write may still run). */
  private readonly inflight = new Map<string, Flight>()
  private readonly refreshing = new Set<string>()
  /** Flight key -> the write count when its last store write finished (bounded: cleared when full). */
  private readonly written = new Map<string, number>()
  /** Store writes of fills finished so far. */
  private writes = 0
  private readonly parsed = new Map<string, Parsed>()
  /** Keys computed lately, by route, pool, authority, path and raw query; each with the cache config it was made under. */
  private readonly keys = new Map<string, { readonly cfg: RouteCacheConfig; readonly key: CacheKey }>()
  /** Compressed copies being made, by stored body id and coding, until they are in the store. */
  private readonly coding = new Map<string, Promise<Buffer>>()
  /**
   * Compressed copies served lately, by stored body id and coding, oldest first: a hit in a
   * coding costs no store lookup (no digest, and no Redis round trip without a near cache). An
   * id names one body forever, so a copy found here is always right for it; the stored
   * response's own freshness still decides every answer.
   */
  private readonly codedRecent = new Map<string, Buffer>()
  private codedRecentBytes = 0
  readonly store: CacheStore

  constructor(private readonly deps: HttpCacheDeps) {
    this.store = deps.store
  }

  /**
   * Takes a request on a caching route (true), or declines it (false) so the plain forward
   * runs: unsafe methods, Range requests, requests the route's policy bypasses.
   */
  handle(routed: RoutedRequest, writer: ClientWriter, deps: AttemptDeps, dropUnderscores: boolean): boolean {
    const cfg = routed.route.cache as RouteCacheConfig
    if (!cfg.enabled || !SAFE.has(routed.method)) return false
    if (cfg.cookies === 'bypass' && hasForeignCookie(routed.headers.cookie, routed.route.split?.cookieName)) {
      this.count(routed, 'bypass')
      writer.cacheStatus = 'BYPASS'
      return false
    }
    const failed = (err: unknown): void => {
      // Nothing an origin or a store does may crash a request: answer, or cut a started answer.
      this.deps.log.error({ err, route: routed.route.name }, 'cache interceptor failed')
      writer.error(UPSTREAM_ERRORS.other, poolDetail(routed.pool.name, UPSTREAM_ERRORS.other))
    }
    if (this.store.getNow === undefined) {
      this.serve(routed, writer, cfg, deps, dropUnderscores).catch(failed)
      return true
    }
    // An in-process store answers without a promise (issue 15), but not from inside the read
    // that parsed the request: after the event loop's poll phase (setImmediate), so the requests
    // that arrived together are all read, then all answered. Measured with wrk at 50 connections
    // on 2 cores, that took a memory hit from about 75 to 52 µs of CPU (user and system time
    // both fell); answering in a microtask after each read gained nothing.
    setImmediate(() => this.handleNow(routed, writer, cfg, deps, dropUnderscores, failed))
    return true
  }

  /** handle() on a store with getNow(): the lookup, and a fresh hit's answer, synchronously. */
  private handleNow(routed: RoutedRequest, writer: ClientWriter, cfg: RouteCacheConfig, deps: AttemptDeps, dropUnderscores: boolean, failed: (err: unknown) => void): void {
    try {
      const primary = this.primaryKey(routed, routed.path, routed.query, cfg)
      const writesBefore = this.writes
      let stored: Stored | undefined
      try {
        stored = this.lookupNow(routed, primary)
      } catch (err) {
        this.lookupFailed(routed, err)
      }
      this.afterLookup(routed, writer, cfg, deps, dropUnderscores, false, primary, writesBefore, stored)?.catch(failed)
    } catch (err) {
      failed(err)
    }
  }

  /** After a successful unsafe request: drop what we hold for its URL and Location (RFC 9111 section 4.4). */
  invalidate(routed: RoutedRequest, location: unknown, contentLocation: unknown): void {
    const cfg = routed.route.cache as RouteCacheConfig
    const targets: [string, string][] = [[routed.path, routed.query]]
    for (const l of [location, contentLocation]) {
      if (typeof l !== 'string') continue
      let u: URL
      try { u = new URL(l, `http://${routed.authority}`) } catch { continue }
      // Only same-origin locations (RFC 9111 section 4.4: a cache MUST NOT invalidate other origins).
      if (normalizeAuthority(u.host)?.authority !== routed.authority) continue
      targets.push([u.pathname, u.search])
    }
    // Every pool's copy: the variants of a split store the same URL once per pool.
    for (const pool of routed.route.invalidates) {
      for (const [path, query] of targets) void this.deps.store.delete(this.primaryKey(routed, path, query, cfg, pool))
    }
  }

  count(routed: RoutedRequest, result: string): void {
    this.lookupCounts.get(routed.route.name, result).inc()
  }

  /** switchyard_cache_lookups_total's series, found once each (metrics/label-cache.ts). */
  private readonly lookupCounts = new ChildCache((route, result) => new FastCounterChild(this.deps.metrics.lookups, ['route', 'result'], [route, result]))

  private primaryKey(routed: RoutedRequest, path: string, query: string, cfg: RouteCacheConfig, pool = routed.pool.name): CacheKey {
    // The pool is part of the key (split variants answer one URL differently). Forwarding headers
    // from trusted proxies reach the origin as sent: an origin that varies on them says so with
    // Vary, which the store keys on; from anyone else they are replaced by ours (constant).
    const partition = cachePartition(pool)
    // The SHA-256 of a key costs more than the rest of a memory hit's lookup: remember recent ones.
    const memo = `${routed.route.name}\u0000${partition}\u0000${routed.authority}\u0000${path}\u0000${query}`
    // The key depends on the route's query rule too: a reload gives the route a new cache config
    // object (same name), so a key made under another one is made again (a reload that starts
    // keeping ?lang must not leave lang=fr and lang=en sharing one entry).
    const known = this.keys.get(memo)
    if (known !== undefined && known.cfg === cfg) return known.key
    const key = cacheKey({ scheme: 'http', host: routed.authority, path, query: keyedQuery(query, cfg.query).slice(1), partition })
    if (known === undefined && this.keys.size >= PARSED_POLICIES) this.keys.clear()
    this.keys.set(memo, { cfg, key })
    return key
  }

  /** The request as http-cache-semantics sees it: our normalised URL and host, the client's headers. */
  policyRequest(routed: RoutedRequest): CachePolicy.Request {
    // The URL as keyed (ignored query parameters left out), so equivalent requests match.
    const rule = (routed.route.cache as RouteCacheConfig).query
    return { url: routed.path + keyedQuery(routed.query, rule), method: 'GET', headers: { ...requestForLibrary(routed.headers), host: routed.authority } as CachePolicy.Headers }
  }

  private async lookup(routed: RoutedRequest, key: CacheKey): Promise<Stored | undefined> {
    return this.parseStored(await this.deps.store.get(key, routed.headers))
  }

  /** lookup() on a store with getNow(). */
  private lookupNow(routed: RoutedRequest, key: CacheKey): Stored | undefined {
    return this.parseStored((this.deps.store.getNow as NonNullable<CacheStore['getNow']>).call(this.deps.store, key, routed.headers))
  }

  private lookupFailed(routed: RoutedRequest, err: unknown): void {
    this.count(routed, 'error')
    this.deps.log.warn({ err }, 'cache lookup failed; serving from upstream')
  }

  private parseStored(got: Awaited<ReturnType<CacheStore['get']>>): Stored | undefined {
    if (got === undefined) return undefined
    // Parsing the stored policy is most of a hit's cost: keep recent ones (policies are not mutated).
    let parsed = this.parsed.get(got.meta)
    if (parsed === undefined) {
      const meta = parseMeta(got)
      if (meta === undefined) return undefined
      const policy = CachePolicy.fromObject(meta.policy)
      // Installed first: the memo makes the library's header view once, and Vary is read from it.
      const hits = HitHeaders.install(policy)
      parsed = {
        policy,
        id: meta.id ?? `meta-${sha256Hex(got.meta)}`,
        vary: meta.vary ?? keyVary((policy.responseHeaders() as Headers).vary),
        hits
      }
      if (this.parsed.size >= PARSED_POLICIES) this.parsed.clear()
      this.parsed.set(got.meta, parsed)
    }
    if (got.invalidatedAt !== undefined) return { policy: staleSince(parsed.policy, got.invalidatedAt), body: got.body, id: parsed.id, vary: parsed.vary }
    return { policy: parsed.policy, body: got.body, id: parsed.id, vary: parsed.vary, hits: parsed.hits }
  }

  private async serve(routed: RoutedRequest, writer: ClientWriter, cfg: RouteCacheConfig, deps: AttemptDeps, dropUnderscores: boolean, again = false): Promise<void> {
    const primary = this.primaryKey(routed, routed.path, routed.query, cfg)
    const writesBefore = this.writes
    let stored: Stored | undefined
    try {
      stored = await this.lookup(routed, primary)
    } catch (err) {
      this.lookupFailed(routed, err)
    }
    return this.afterLookup(routed, writer, cfg, deps, dropUnderscores, again, primary, writesBefore, stored)
  }

  /** What serve() does once the lookup is done: synchronous for a fresh hit, a promise otherwise. */
  private afterLookup(routed: RoutedRequest, writer: ClientWriter, cfg: RouteCacheConfig, deps: AttemptDeps, dropUnderscores: boolean, again: boolean, primary: CacheKey, writesBefore: number, stored: Stored | undefined): Promise<void> | undefined {
    if (writer.closed) return
    const range = routed.headers.range !== undefined
    let ev: { response?: { headers: unknown }; revalidation?: { synchronous: boolean } } | undefined
    if (stored !== undefined) {
      ev = stored.policy.evaluateRequest(this.policyRequest(routed))
      // must-revalidate and friends bind once stale: no stale-while-revalidate, no max-stale (RFC 9111 section 5.2.2.2).
      if (ev.response !== undefined && stored.policy.age() > stored.policy.maxAge() && mustRevalidate(ev.response.headers as Headers)) {
        ev = { revalidation: { synchronous: true } }
      }
      if (ev.response !== undefined && ev.revalidation === undefined) {
        this.count(routed, 'hit')
        this.sendStored(routed, writer, stored, ev.response.headers as Headers, 'HIT', 'hit')
        return
      }
    }
    const base: FillBase = { routed, cfg, primary, deps, dropUnderscores, again, writesBefore }
    if (stored !== undefined && ev !== undefined) {
      if (range) {
        this.passRange(routed, writer, deps, dropUnderscores)
        return
      }
      if (ev.response !== undefined && ev.revalidation !== undefined && !ev.revalidation.synchronous) {
        this.count(routed, 'stale')
        this.refreshInBackground(base, stored)
        this.sendStored(routed, writer, stored, ev.response.headers as Headers, 'STALE', 'hit; detail=stale-while-revalidate')
        return
      }
      if (ev.revalidation !== undefined && hasValidator(stored.policy)) {
        const ctx: FillContext = { ...base, writer, stale: stored, conditional: true, xcache: 'MISS', fwd: 'fwd=stale', finish: NO_FLIGHT }
        writer.flow = runExchange(deps, this.fillRequest(routed, dropUnderscores, validatorsOf(stored.policy)), new CacheSink(this, ctx))
        return
      }
    }
    if (range) return this.serveRange(base, writer)
    return this.fill(base, writer, stored)
  }

  /** A Range request without a fresh entry: wait briefly for a fill under way, else pass it on. */
  private async serveRange(base: FillBase, writer: ClientWriter): Promise<void> {
    const { routed, cfg, deps, dropUnderscores, again, writesBefore } = base
    // A fill of this URL is under way: its answer may serve the range once stored.
    // Bounded: the fill runs at its own client's pace, and a seek must not wait for that.
    const flight = flightKey(base.primary, routed)
    const pending = again ? undefined : this.inflight.get(flight)
    // Or it finished its write while our lookup was under way: look again, as fill() does.
    if (pending === undefined && !again && (this.written.get(flight) ?? -1) >= writesBefore) {
      return this.serve(routed, writer, cfg, deps, dropUnderscores, true)
    }
    if (pending !== undefined && await within(RANGE_WAIT_MS, (async () => { await pending.promise; await pending.written })())) {
      if (writer.closed) return
      return this.serve(routed, writer, cfg, deps, dropUnderscores, true)
    }
    if (writer.closed) return
    this.passRange(routed, writer, deps, dropUnderscores)
  }

  /** A Range request we cannot answer from a fresh entry goes to the origin as sent, and is not stored. */
  private passRange(routed: RoutedRequest, writer: ClientWriter, deps: AttemptDeps, dropUnderscores: boolean): void {
    this.count(routed, 'miss')
    writer.cacheStatus = 'MISS'
    writer.flow = runExchange(deps, forwardRequest(routed, null, dropUnderscores), new ForwardSink(writer, routed.pool.name, undefined, RANGE_PASSED))
  }

  /** Replays a stored answer (or a 304 for the client's own conditional) through the client writer. */
  sendStored(routed: RoutedRequest, writer: ClientWriter, stored: Stored, libraryHeaders: Headers, xcache: string, detail: string): void {
    writer.cacheStatus = xcache
    const headers = stored.hits?.client(libraryHeaders) ?? forClient(libraryHeaders)
    const cfg = routed.route.cache as RouteCacheConfig
    for (const name of ruleOptions(cfg).strip) delete headers[name]
    const h = writer.headersFrom(headers)
    h['x-cache'] = xcache
    h['cache-status'] = `switchyard; ${detail}`
    const status = storedStatus((stored.policy as unknown as { status(): number }).status(), libraryHeaders)
    // What the client writer would do with the whole body: the compressed copy, when a coding.
    h['content-length'] = stored.body.length
    const verdict = writer.compression(status, h)
    // RFC 9110 section 13.2.1: preconditions apply only where the answer would be 2xx.
    if (status >= 200 && status < 300 && notModified(routed.headers as Headers, headers)) {
      const nm = notModifiedHeaders(headers) as Record<string, string | string[]>
      nm['x-cache'] = xcache
      nm['cache-status'] = h['cache-status']
      nm.via = h.via as string
      nm['x-request-id'] = routed.id
      // The fields the 200 would carry (RFC 9110 section 15.4.5): Vary, and the weak tag of
      // the compressed answer (If-None-Match compares weakly, so W/"x" selects "x" above).
      if (verdict !== PASS) addVary(nm)
      if (typeof verdict === 'string' && typeof nm.etag === 'string') nm.etag = weakEtag(nm.etag)
      writer.whole(304, nm, undefined)
      return
    }
    const range = routed.headers.range
    if (range !== undefined && status === 200 && ifRangeHolds(first(routed.headers['if-range']), first(headers.etag), first(headers['last-modified']))) {
      const size = stored.body.length
      const r = selectRange(first(range) ?? '', size)
      if (r.kind === 'partial') {
        h['content-range'] = `bytes ${r.start}-${r.end}/${size}`
        writer.whole(206, h, stored.body.subarray(r.start, r.end + 1))
        return
      }
      if (r.kind === 'unsatisfiable') {
        const body = Buffer.from(`416 Range Not Satisfiable\n`)
        writer.whole(416, { 'content-range': `bytes */${size}`, 'content-type': 'text/plain; charset=utf-8', via: h.via, 'x-request-id': routed.id, 'x-cache': xcache, 'cache-status': h['cache-status'] }, body)
        return
      }
    }
    if (status === 200) h['accept-ranges'] = 'bytes'
    if (typeof verdict === 'string' && routed.method !== 'HEAD') {
      this.sendCoded(routed, writer, stored, status, h, verdict)
      return
    }
    writer.whole(status, h, stored.body)
  }

  /** A stored answer in the client's coding: from the compressed copy, made now if there is none. */
  private sendCoded(routed: RoutedRequest, writer: ClientWriter, stored: Stored, status: number, h: OutgoingHttpHeaders, coding: Coding): void {
    const recent = this.codedRecent.get(`${stored.id}|${coding}`)
    if (recent !== undefined) {
      applyCoding(h, coding)
      writer.wholeEncoded(status, h, recent, coding)
      return
    }
    this.codedBody(routed, stored, coding).then((body) => {
      if (writer.closed) return
      applyCoding(h, coding)
      writer.wholeEncoded(status, h, body, coding)
    }, (err: unknown) => {
      // Compression failed (it does not, short of memory): the writer compresses as it sends.
      this.deps.log.warn({ err, route: routed.route.name }, 'compressing a stored response failed')
      if (!writer.closed) writer.whole(status, h, stored.body)
    })
  }

  /**
   * The compressed copy of a stored body: from the store when one made from this very body is
   * there, else compressed now (once per process: concurrent hits share it until it is stored).
   */
  private async codedBody(routed: RoutedRequest, stored: Stored, coding: Coding): Promise<Buffer> {
    const key = codedKey(this.primaryKey(routed, routed.path, routed.query, routed.route.cache as RouteCacheConfig), coding)
    const flight = `${stored.id}|${coding}`
    const got = await this.deps.store.get(key, routed.headers)
    if (got !== undefined && got.meta === codedMeta(stored.id, coding)) {
      this.rememberCoded(flight, got.body)
      return got.body
    }
    let pending = this.coding.get(flight)
    if (pending === undefined) {
      const policy = routed.route.compress as CompressPolicy
      const made = encodeBody(coding, policy, stored.body).then((out) => {
        policy.counters.bytesIn += stored.body.length
        policy.counters.bytesOut += out.length
        return out
      })
      pending = made
      this.coding.set(flight, made)
      // Kept until the copy is in the store, so a hit meanwhile does not compress it again.
      const done = (): void => { if (this.coding.get(flight) === made) this.coding.delete(flight) }
      made.then((body) => this.writeCoded(routed, key, stored, body), () => undefined).then(done, done)
    }
    return await pending
  }

  /** Stores a compressed copy beside the response it was made from, for as long as that one is kept. */
  async writeCoded(routed: RoutedRequest, key: CacheKey, stored: Stored, body: Buffer): Promise<void> {
    this.rememberCoded(`${stored.id}|${key.coding as string}`, body)
    const ttl = keepFor(stored.policy)
    if (ttl <= 0) return
    await this.deps.store.set(key, stored.vary, routed.headers, { meta: codedMeta(stored.id, key.coding as string), body }, ttl)
  }

  /** stale-if-error (RFC 5861): replays the stale entry when the origin failed, if it allows. */
  staleOnError(ctx: FillContext, status: number): boolean {
    const stored = ctx.stale
    if (stored === undefined || mustRevalidate(stored.policy.responseHeaders() as Headers)) return false
    // revalidatedPolicy hands back the same policy, unmodified, exactly when stale-if-error allows it.
    let same = false
    try {
      const r = stored.policy.revalidatedPolicy(this.policyRequest(ctx.routed), { status, headers: {} })
      same = !r.modified && r.policy === stored.policy
    } catch { same = false }
    if (!same) return false
    if (ctx.writer !== undefined) {
      this.count(ctx.routed, 'stale')
      this.sendStored(ctx.routed, ctx.writer, stored, stored.policy.responseHeaders() as Headers, 'STALE', 'hit; fwd=stale; detail=stale-if-error')
    }
    return true
  }

  /** A miss (or an entry we cannot revalidate): one upstream exchange per key at a time. */
  async fill(base: FillBase, writer: ClientWriter, stale: Stored | undefined): Promise<void> {
    const { routed } = base
    const flight = flightKey(base.primary, routed)
    const pending = this.inflight.get(flight)
    if (pending !== undefined) {
      // Arriving after the answer was known (its store write still running) is a plain hit.
      const waited = pending.settled === undefined
      const shared = pending.settled ?? await pending.promise
      if (writer.closed) return
      if (shared.kind === 'stored' && shared.stored.policy.satisfiesWithoutRevalidation(this.policyRequest(routed))) {
        const headers = shared.stored.policy.responseHeaders() as Headers
        if (waited) {
          // Answered by another request's forward (RFC 9211 section 2.6, "collapsed"): neither a hit nor our own miss.
          this.count(routed, 'collapsed')
          this.sendStored(routed, writer, shared.stored, headers, 'MISS', 'fwd=miss; collapsed')
        } else {
          this.count(routed, 'hit')
          this.sendStored(routed, writer, shared.stored, headers, 'HIT', 'hit')
        }
        return
      }
      // Stored, and usable for this request once written though not fresh (max-age=0 with
      // stale-while-revalidate, say): once the write lands, this request is like any other
      // finding a stored entry. Not for a request the entry cannot serve (another Vary value,
      // no-cache): that one goes upstream now rather than queue behind fill after fill.
      if (shared.kind === 'stored' && pending.written !== undefined && !base.again && servesOnceStored(shared.stored.policy, this.policyRequest(routed))) {
        await pending.written
        if (writer.closed) return
        return this.serve(routed, writer, base.cfg, base.deps, base.dropUnderscores, true)
      }
      // Not shareable (or not for this request's Vary): go upstream ourselves.
    }
    // The fill of this key finished its write while our lookup was under way (the lookup missed
    // it by a round trip): look again rather than fetch what was just stored.
    if (pending === undefined && !base.again && (this.written.get(flight) ?? -1) >= base.writesBefore) {
      return this.serve(routed, writer, base.cfg, base.deps, base.dropUnderscores, true)
    }
    let finish: FillContext['finish'] = NO_FLIGHT
    // The Redis fill lock this flight holds across instances, released with the flight.
    let release: (() => Promise<void>) | undefined
    if (pending === undefined) {
      let settle: (s: Shared) => void = () => {}
      const entry: Flight = { promise: new Promise<Shared>((resolve) => { settle = resolve }), settled: undefined, written: undefined }
      this.inflight.set(flight, entry)
      // Waiters get the result at once; the key stays claimed until the entry is in the store, so
      // a request arriving meanwhile is served the same answer instead of missing again. The
      // same holds for other instances: the lock is released only after the store write.
      let finished = false
      finish = (s, stored) => {
        if (finished) return
        finished = true
        entry.settled = s
        entry.written = stored
        settle(s)
        const done = (): void => {
          this.inflight.delete(flight)
          if (stored !== undefined) this.noteWritten(flight)
          void release?.()
        }
        if (stored === undefined) done()
        else void stored.finally(done)
      }
    }
    try {
      // Only the local flight's leader contends for the cluster-wide lock: one Redis round trip per miss and instance.
      const lock = this.deps.lock
      if (lock !== undefined && pending === undefined) {
        if (await this.coalesce(lock, flight, base, writer, finish, (r) => { release = r })) return
        if (writer.closed) { finish({ kind: 'pass' }); return }
      }
      const ctx: FillContext = { ...base, writer, stale, conditional: false, xcache: stale === undefined ? 'MISS' : 'EXPIRED', fwd: stale === undefined ? 'fwd=miss' : 'fwd=stale', finish }
      writer.flow = runExchange(base.deps, this.fillRequest(routed, base.dropUnderscores, undefined), new CacheSink(this, ctx))
    } catch (err) {
      // Never leave the flight (and the lock) claimed: later requests for the key would wait on it.
      finish({ kind: 'pass' })
      throw err
    }
  }

  /**
   * Cluster-wide collapsing (fill-lock.ts) of a fill this process leads: take the Redis lock and
   * fetch (`lead` receives its release), or wait for the instance holding it and answer from
   * what it stored. True when the request and the local flight were answered that way; false
   * when this process fetches itself (leader, failed open, or nothing usable after the wait).
   */
  private async coalesce(lock: FillLock, flight: string, base: FillBase, writer: ClientWriter, finish: FillContext['finish'], lead: (release: () => Promise<void>) => void): Promise<boolean> {
    const { routed } = base
    const ticket = await lock.acquire(flight)
    if (ticket.leader) {
      this.countCoalesce(routed, ticket.locked ? 'leader' : 'error')
      lead(ticket.release)
      return false
    }
    const how = await ticket.wait()
    // Also after a timeout: the leader may have stored its answer and its message been lost.
    const stored = await this.lookup(routed, base.primary).catch(() => undefined)
    if (stored !== undefined && stored.policy.satisfiesWithoutRevalidation(this.policyRequest(routed))) {
      this.countCoalesce(routed, 'follower_hit')
      finish({ kind: 'stored', stored })
      if (!writer.closed) {
        // Another instance's forward answered it (RFC 9211 section 2.6), as for an in-process collapse.
        this.count(routed, 'collapsed')
        this.sendStored(routed, writer, stored, stored.policy.responseHeaders() as Headers, 'MISS', 'fwd=miss; collapsed')
      }
      return true
    }
    // Not stored (not storable, too large, an error) or not for this request: fetch ourselves.
    this.countCoalesce(routed, how === 'released' ? 'follower_miss' : 'follower_timeout')
    return false
  }

  private countCoalesce(routed: RoutedRequest, result: 'leader' | 'follower_hit' | 'follower_miss' | 'follower_timeout' | 'error'): void {
    this.deps.metrics.coalesce.labels(routed.route.name, result).inc()
  }

  private noteWritten(flight: string): void {
    if (this.written.size >= PARSED_POLICIES) this.written.clear()
    this.written.set(flight, this.writes++)
  }

  /** A fill always asks with GET (a HEAD's entry needs a body for later GETs), without the client's conditionals. */
  private fillRequest(routed: RoutedRequest, dropUnderscores: boolean, conditional: Headers | undefined): UpstreamRequest {
    return {
      routed,
      method: 'GET',
      headers: (m) => {
        const h = upstreamHeaders(routed, m, dropUnderscores)
        for (const c of CLIENT_CONDITIONALS) delete h[c]
        if (conditional !== undefined) {
          const inm = first(conditional['if-none-match'])
          const ims = first(conditional['if-modified-since'])
          if (inm !== undefined) h['if-none-match'] = inm
          if (ims !== undefined) h['if-modified-since'] = ims
        }
        return h
      },
      body: null,
      retryable: routed.route.retries.attempts > 0 && routed.route.retryMethods.has('GET')
    }
  }

  /** Whether a response may be stored, and the policy it is stored under. */
  policyFor(ctx: FillContext, res: UpstreamResponse): { policy: CachePolicy; storable: boolean; length: number } {
    const headers = res.headers as Headers
    const view = forLibrary(res.status, headers, ruleOptions(ctx.cfg))
    // A default TTL is the route's guess, never permission to share an authorized answer (RFC 9111 section 3.5).
    const resHeaders = withDefaultStaleIfError(ctx.routed.headers.authorization === undefined ? withDefaultTtl(view.headers, ctx.cfg.default_ttl_s) : view.headers, ctx.cfg.stale_if_error_s)
    const policy = new CachePolicy(this.policyRequest(ctx.routed), { status: view.status, headers: resHeaders as CachePolicy.Headers }, POLICY_OPTIONS)
    const length = Number(first(headers['content-length']) ?? NaN)
    const storable = policy.storable() &&
      (ctx.cfg.share_set_cookie || headers['set-cookie'] === undefined) &&
      !(Number.isFinite(length) && length > ctx.cfg.max_entry_bytes) &&
      // Worth keeping while fresh, or, with a validator, for cheap 304 revalidation later.
      (policy.timeToLive() > 0 || hasResponseValidator(headers))
    return { policy, storable, length }
  }

  async write(ctx: FillContext, stored: Stored): Promise<void> {
    const ttl = keepFor(stored.policy)
    if (ttl <= 0) return
    const r = ctx.routed
    const meta: Meta = { v: 1, policy: stored.policy.toObject(), url: `${r.host}${r.path}${r.query}`, id: stored.id, vary: stored.vary }
    // The store never rejects on the request path; a failed write is counted by its hooks.
    const tags = responseTags(stored.policy.responseHeaders() as Headers, ruleOptions(ctx.cfg).tagHeaders)
    await this.deps.store.set(ctx.primary, stored.vary, r.headers, { meta: JSON.stringify(meta), body: stored.body, tags }, ttl)
  }

  /**
   * A 304 to our conditional request (RFC 9111 sections 4.3.3 and 4.3.4): the stored response it
   * selects, updated with its fields. A 304 without any validator answers the validators we sent,
   * so it selects our entry (as Traffic Server and httpd do). A 304 naming another validator may
   * not update the entry, but it still answers this request from it: one client request never
   * costs two origin requests. `updated` false: serve it, do not store it.
   */
  refreshed(ctx: FillContext, res: UpstreamResponse): { stored: Stored; updated: boolean } {
    const stale = ctx.stale as Stored
    const view = forLibrary(304, res.headers as Headers, ruleOptions(ctx.cfg))
    const h = view.headers['cache-control'] === undefined ? view.headers : withDefaultStaleIfError(view.headers, ctx.cfg.stale_if_error_s)
    if (h.etag === undefined && h['last-modified'] === undefined) {
      const own = stale.policy.responseHeaders() as Headers
      if (own.etag !== undefined) h.etag = own.etag
      else if (own['last-modified'] !== undefined) h['last-modified'] = own['last-modified']
    }
    const { policy, modified, matches } = stale.policy.revalidatedPolicy(this.policyRequest(ctx.routed), { status: 304, headers: h as CachePolicy.Headers })
    if (modified || !matches) return { stored: stale, updated: false }
    // The same body (and so the same compressed copies), under the Vary the 304 says.
    const vary = keyVary(res.headers.vary ?? (policy.responseHeaders() as Headers).vary)
    return { stored: { policy, body: stale.body, id: stale.id, vary }, updated: true }
  }

  /** stale-while-revalidate: one background refresh per key at a time, through the attempt loop. */
  private refreshInBackground(base: FillBase, stored: Stored): void {
    const flight = flightKey(base.primary, base.routed)
    if (this.refreshing.has(flight)) return
    this.refreshing.add(flight)
    const ctx: FillContext = { ...base, writer: undefined, stale: stored, conditional: hasValidator(stored.policy), xcache: '', fwd: '', finish: () => this.refreshing.delete(flight) }
    runExchange(base.deps, this.fillRequest(base.routed, base.dropUnderscores, validatorsOf(stored.policy)), new CacheSink(this, ctx))
  }

  private rememberCoded(flight: string, body: Buffer): void {
    if (body.length > CODED_RECENT_BYTES / 16 || this.codedRecent.has(flight)) return
    this.codedRecent.set(flight, body)
    this.codedRecentBytes += body.length
    for (const [k, b] of this.codedRecent) {
      if (this.codedRecentBytes <= CODED_RECENT_BYTES) break
      this.codedRecent.delete(k)
      this.codedRecentBytes -= b.length
    }
  }

  get log(): Logger {
    return this.deps.log
  }
}

/**
 * Receives a fill's, a revalidation's or a background refresh's answer from the attempt loop:
 * relays it to the client writer (when there is one) and copies the body into the store as it
 * streams, when the answer may be stored.
 */
class CacheSink implements ResponseSink {
  /** drop: handled already (304, stale-if-error); relay: to the client only; store: relay and keep. */
  private mode: 'drop' | 'relay' | 'store' = 'relay'
  private policy: CachePolicy | undefined
  private vary: string | string[] | undefined
  private readonly chunks: Buffer[] = []
  private size = 0
  private flow: Flow | undefined
  /** Where the body goes: the client's writer, until a HEAD's answer is complete at its head. */
  private client: ClientWriter | undefined
  /** The stored response, once complete, and the compressed body the client got, once complete (either may come first). */
  private stored: Stored | undefined
  private coded: { coding: Coding; body: Buffer } | undefined

  constructor(private readonly cache: HttpCache, private readonly ctx: FillContext) {
    this.client = ctx.writer
  }

  onResponseStart(res: UpstreamResponse, flow: Flow): void {
    const { ctx, cache } = this
    const writer = ctx.writer
    this.flow = flow
    if (ctx.conditional && res.status === 304) {
      this.mode = 'drop'
      const { stored: updated, updated: matched } = cache.refreshed(ctx, res)
      if (matched) {
        const write = cache.write(ctx, updated)
        ctx.finish({ kind: 'stored', stored: updated }, write)
      } else {
        cache.log.warn({ pool: ctx.routed.pool.name, member: res.member.name }, 'origin answered 304 with a validator we did not send; entry served but not updated')
        ctx.finish({ kind: 'pass' })
      }
      if (writer !== undefined) {
        writer.member = res.member.name
        writer.upstreamMs = res.upstreamMs
        cache.count(ctx.routed, 'revalidated')
        cache.sendStored(ctx.routed, writer, updated, updated.policy.responseHeaders() as Headers, 'REVALIDATED', `hit; fwd=stale; fwd-status=304${matched ? '' : '; detail=mismatched-validator'}`)
      }
      return
    }
    if (res.status >= 500 && cache.staleOnError(ctx, res.status)) {
      this.mode = 'drop'
      ctx.finish({ kind: 'pass' })
      // The stale entry answered: the error's body is not read (the try still counts as a 5xx).
      flow.abort()
      return
    }
    const { policy, storable, length } = cache.policyFor(ctx, res)
    this.policy = policy
    this.vary = res.headers.vary
    this.mode = storable ? 'store' : 'relay'
    if (!storable) ctx.finish({ kind: 'pass' })
    if (writer === undefined) {
      if (!storable) { this.mode = 'drop'; flow.abort() }
      return
    }
    cache.count(ctx.routed, 'miss')
    writer.member = res.member.name
    writer.upstreamMs = res.upstreamMs
    writer.cacheStatus = ctx.xcache
    const h = writer.headersFrom(res.headers as Headers)
    for (const name of ruleOptions(ctx.cfg).strip) delete h[name]
    h['x-cache'] = ctx.xcache
    // "stored" only when the size is known to fit; a chunked body may still turn out too large.
    h['cache-status'] = `switchyard; ${ctx.fwd}${storable && Number.isFinite(length) && cache.store.writable() ? '; stored' : ''}`
    // The client writer compresses this answer for its client anyway: keep that as the copy in its coding.
    if (storable && ctx.routed.method !== 'HEAD') writer.captureEncoded(ctx.cfg.max_entry_bytes, (coding, body) => this.onCoded(coding, body))
    if (!writer.head(res.status, h, res.statusMessage)) {
      // An invalid status or field from the member, or the client left: never relay or keep it.
      this.mode = 'drop'
      ctx.finish({ kind: 'pass' })
      flow.abort()
      if (!writer.closed) writer.error(UPSTREAM_ERRORS.protocol, poolDetail(ctx.routed.pool.name, UPSTREAM_ERRORS.protocol))
      return
    }
    if (ctx.routed.method === 'HEAD') {
      // A HEAD is answered at its head (the fill asked with GET): the body only feeds the store,
      // and an answer we will not store is not downloaded at all.
      writer.end()
      this.client = undefined
      if (this.mode === 'relay') { this.mode = 'drop'; flow.abort() }
      return
    }
    writer.onWritable(() => flow.resume())
  }

  onEarlyHints(headers: UpstreamResponse['headers']): void {
    this.ctx.writer?.earlyHints(headers as Headers)
  }

  onProcessing(): void {
    this.ctx.writer?.processing()
  }

  onResponseData(chunk: Buffer): boolean {
    if (this.mode === 'drop') return true
    if (this.mode === 'store') {
      this.size += chunk.length
      if (this.size > this.ctx.cfg.max_entry_bytes) {
        this.mode = 'relay'
        this.chunks.length = 0
        this.ctx.finish({ kind: 'pass' })
        if (this.client === undefined) { this.mode = 'drop'; this.flow?.abort() }
      } else {
        this.chunks.push(chunk)
      }
    }
    return this.client === undefined ? true : this.client.write(chunk)
  }

  onResponseEnd(): void {
    const { ctx } = this
    if (this.mode === 'drop') return
    this.client?.end()
    if (this.mode === 'store') {
      const stored: Stored = { policy: this.policy as CachePolicy, body: Buffer.concat(this.chunks, this.size), id: randomUUID(), vary: keyVary(this.vary) }
      this.stored = stored
      ctx.finish({ kind: 'stored', stored }, this.cache.write(ctx, stored))
      this.keepCoded()
    }
  }

  private onCoded(coding: Coding, body: Buffer): void {
    this.coded = { coding, body }
    this.keepCoded()
  }

  /** Both the stored response and the client's compressed body are complete: keep the latter as its copy. */
  private keepCoded(): void {
    const { stored, coded } = this
    if (stored === undefined || coded === undefined || this.mode !== 'store') return
    this.coded = undefined
    void this.cache.writeCoded(this.ctx.routed, codedKey(this.ctx.primary, coded.coding), stored, coded.body)
  }

  onAbort(): void {
    this.ctx.finish({ kind: 'pass' })
  }

  onResponseError(error: ProxyError, started: boolean): void {
    const { ctx } = this
    ctx.finish({ kind: 'pass' })
    if (ctx.writer === undefined) {
      this.cache.log.warn({ pool: ctx.routed.pool.name, kind: error.name }, 'background revalidation failed')
      return
    }
    if (started) {
      if (this.mode !== 'drop') this.client?.cut()
      return
    }
    if (error.status >= 500 && this.cache.staleOnError(ctx, error.status)) return
    ctx.writer.error(error, error.status >= 500 ? poolDetail(ctx.routed.pool.name, error) : undefined)
  }
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

/** How long the store keeps a response: its freshness, plus a grace period for 304 revalidation when it has a validator. */
function keepFor(p: CachePolicy): number {
  return p.timeToLive() + (hasValidator(p) ? REVALIDATION_GRACE_MS : 0)
}

/** The meta of a compressed copy: the stored body it was made from, and its coding. */
function codedMeta(id: string, coding: string): string {
  return `coded:${coding}:${id}`
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
 * Bytes of compressed copies kept in process beside the store (HttpCache.codedRecent), and so
 * the most they add to its memory; a copy larger than a sixteenth of it is not kept.
 */
const CODED_RECENT_BYTES = 8 * 1024 * 1024

/** How long a Range request waits for a fill of its URL to be stored before going upstream itself. */
const RANGE_WAIT_MS = 1000

/** Whether `p` settles within `ms` (it keeps running either way; its rejection is ignored). */
async function within(ms: number, p: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<false>((resolve) => { timer = setTimeout(resolve, ms, false) })
  try {
    return await Promise.race([p.then(() => true, () => false), timeout])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Whether a stored response can answer this request, fresh, stale-while-revalidate or after a
 * revalidation: its Vary matches and the client does not refuse stored answers (no-cache).
 * Asked as "would it serve if staleness were no object" (max-stale), so freshness does not count.
 */
function servesOnceStored(policy: CachePolicy, req: CachePolicy.Request): boolean {
  const h = req.headers as Headers
  if (/no-cache/i.test(String(h['cache-control'] ?? '')) || /no-cache/i.test(String(h.pragma ?? ''))) return false
  return policy.evaluateRequest({ ...req, headers: { ...req.headers, 'cache-control': 'max-stale' } }).response !== undefined
}

/** The in-process flight (and fill lock) of a request: its URL key and variantHint. */
function flightKey(primary: CacheKey, routed: RoutedRequest): string {
  return `${primary.digest}|${variantHint(routed)}`
}

/**
 * Concurrent misses are collapsed per URL and per value of the headers responses commonly
 * vary on, so two clients asking for different encodings are not handed one another's answer.
 */
function variantHint(routed: RoutedRequest): string {
  const h = routed.headers
  return `${first(h['accept-encoding']) ?? ''}|${first(h.accept) ?? ''}|${first(h['accept-language']) ?? ''}|${first(h.origin) ?? ''}`
}

/**
 * The Vary names the store keys a response on: the origin's, plus Origin. An origin that reflects
 * a request's Origin (CORS) without saying Vary: Origin would otherwise hand one site's answer to
 * every other (and to requests without Origin); keying on it costs one variant per Origin value.
 */
function keyVary(vary: string | string[] | undefined): string {
  const v = vary === undefined ? '' : Array.isArray(vary) ? vary.join(', ') : vary
  if (v.includes('*')) return v
  return v.trim() === '' ? 'origin' : `${v}, origin`
}

/**
 * default_ttl_s: when the origin gave no freshness information at all, let a shared cache keep
 * the response that long by adding s-maxage (only shared caches read it).
 */
function withDefaultTtl(h: Headers, ttl: number): Headers {
  if (ttl <= 0) return h
  const cc = first(h['cache-control'])
  if (h.expires !== undefined || (cc !== undefined && /max-age|s-maxage|no-cache|no-store|private/i.test(cc))) return h
  // In the library's view only: the client still sees the origin's own fields (forClient()).
  return { ...h, 'cache-control': cc === undefined ? `max-age=${ttl}` : `${cc}, max-age=${ttl}`, ' sy:cache-control': (h[' sy:cache-control'] ?? null) as unknown as string }
}

/**
 * stale_if_error_s: when the origin fails (no connection, a reset, a timeout, 500/502/503/504),
 * a stale entry may answer for this long past its freshness, as if the origin had sent
 * `stale-if-error` (RFC 5861): the route's configuration is the out-of-band permission RFC 9111
 * section 4.2.4 asks for, as Traffic Server's and Squid's defaults are. Never where serving
 * stale is forbidden (must-revalidate, proxy-revalidate, s-maxage, no-cache), never for a
 * response without freshness or a validator, and the origin's own stale-if-error wins.
 */
function withDefaultStaleIfError(h: Headers, seconds: number): Headers {
  if (seconds <= 0 || mustRevalidate(h)) return h
  const cc = first(h['cache-control'])
  if (cc !== undefined && /(^|[\s,])(no-cache|no-store|stale-if-error)\b/i.test(cc)) return h
  const fresh = (cc !== undefined && /(^|[\s,])(max-age|s-maxage)\s*=/i.test(cc)) || h.expires !== undefined
  if (!fresh && h.etag === undefined && h['last-modified'] === undefined) return h
  // In the library's view only: the client still sees the origin's own fields (forClient()).
  return { ...h, 'cache-control': cc === undefined ? `stale-if-error=${seconds}` : `${cc}, stale-if-error=${seconds}`, ' sy:cache-control': (h[' sy:cache-control'] ?? null) as unknown as string }
}

/** The route's cache rules, computed once per config object. */
interface RouteRules extends RuleOptions {
  /** Fields the purge tags are read from (lower-case). */
  readonly tagHeaders: readonly string[]
  /** Fields removed from answers to clients: targeted and tag fields, as the route says. */
  readonly strip: readonly string[]
}

const RULES = new WeakMap<RouteCacheConfig, RouteRules>()

function ruleOptions(cfg: RouteCacheConfig): RouteRules {
  let r = RULES.get(cfg)
  if (r === undefined) {
    const targeted = cfg.targeted_fields.map((n) => n.toLowerCase())
    const tagHeaders = cfg.tag_headers.map((n) => n.toLowerCase())
    const strip = [...(cfg.strip_targeted_fields ? targeted : []), ...(cfg.strip_tag_headers ? tagHeaders : [])]
    r = { shareSetCookie: cfg.share_set_cookie, targeted, tagHeaders, strip }
    RULES.set(cfg, r)
  }
  return r
}

/**
 * A soft-purged entry (purge with "soft": true) as if its freshness had ended at the purge: it
 * is stale from then on, so stale-while-revalidate and stale-if-error windows count from the
 * purge and a validator makes the next fetch a 304. http-cache-semantics computes age from the
 * response time, so the copy gets an earlier one. An entry already stale then is left as is.
 */
function staleSince(policy: CachePolicy, at: number): CachePolicy {
  const sincePurge = Math.max(0, (Date.now() - at) / 1000)
  const ageAtPurge = policy.age() - sincePurge
  const freshFor = policy.maxAge() - ageAtPurge
  if (freshFor <= 0) return policy
  const obj = policy.toObject() as CachePolicy.CachePolicyObject & { t: number }
  return CachePolicy.fromObject({ ...obj, t: obj.t - freshFor * 1000 })
}

/** A Cookie header with anything besides the proxy's own split cookies. */
function hasForeignCookie(cookie: string | undefined, own: string | undefined): boolean {
  if (cookie === undefined || cookie === '') return false
  for (const part of cookie.split(';')) {
    const name = part.slice(0, part.indexOf('=') < 0 ? undefined : part.indexOf('=')).trim()
    if (name !== '' && name !== own) return true
  }
  return false
}
