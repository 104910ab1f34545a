/**
 * The forward proxy's rules, compiled once per config (and again on every reload, which also
 * re-reads the block list files): who may use the proxy, where to, and what is filtered. Every
 * refusal names the rule that made it.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { BlockList, isIP } from 'node:net'
import type { IncomingHttpHeaders } from 'node:http'
import type { Config, ForwardConfig, PoolConfig, RouteCacheConfig } from '../config/schema.js'
import type { RouteRuntime } from '../routing/runtime.js'
import { compileRules, matchesAddress, matchesName, namesAddress, specialAddress, unmapAddress, type DestinationRule } from './destination-rules.js'
import { parseHash, verifyPassword, type ParsedHash } from '../security/password-hash.js'

/** The cache partition and metrics pool label of forward traffic (not a valid pool name, so it never meets one). */
export const FORWARD_POOL = '~forward'
export const FORWARD_ROUTE = '~forward'

/** A refusal: the metric label of the rule, and the one line the client reads. */
export interface Denial {
  readonly rule: string
  /** "denied by forward.deny[2] (host *.example.com)" */
  readonly detail: string
}

/** Whose rules a request runs under: everyone's, or a user's own. */
export interface ForwardScope {
  /** Unique per compiled policy: connection pools are kept per scope (their lookups check its rules). */
  readonly key: string
  /** The pool label and cache partition (users with rules of their own get their own). */
  readonly partition: string
  readonly allow: readonly DestinationRule[]
  readonly allowAt: string
  readonly deny: readonly DestinationRule[]
}

export type Admission =
  | { readonly ok: true; readonly scope: ForwardScope; readonly user: string | undefined }
  | { readonly ok: false; readonly status: 403 | 407; readonly denial: Denial }

interface User {
  readonly name: string
  readonly hash: ParsedHash | undefined
  readonly scope: ForwardScope
}

let generation = 0
const VERIFIED_MAX = 1024

function deny(rule: string, why: string): Denial {
  return { rule, detail: `denied by ${rule} (${why})` }
}

/** "host:port" for messages, IPv6 in brackets. */
function target(host: string, port: number): string {
  return `${isIP(host) === 6 ? `[${host}]` : host}:${port}`
}

export class ForwardPolicy {
  readonly config: ForwardConfig
  /** The route runtime forward requests run with (cache, retries, limits). */
  readonly route: RouteRuntime
  readonly realm: string
  readonly anonymous: boolean
  readonly global: ForwardScope
  readonly connectPorts: ReadonlySet<number>
  private readonly clients: BlockList | undefined
  private readonly users = new Map<string, User>()
  private readonly blocked = new Map<string, number>()
  private readonly paths: readonly RegExp[]
  private readonly types: readonly string[]
  private readonly strip: readonly string[]
  /** Verified for unknown users (and users whose hash is unusable), so they cost what known ones do. */
  private readonly decoy: ParsedHash | undefined
  /** Credentials already verified (sha256 of the header value -> user): scrypt is slow on purpose. */
  private readonly verified = new Map<string, string>()

  constructor(config: Config) {
    const f = config.forward
    this.config = f
    const gen = ++generation
    this.realm = f.realm
    this.anonymous = f.anonymous
    this.connectPorts = new Set(f.connect_ports)
    if (f.clients.length > 0) {
      this.clients = new BlockList()
      for (const c of f.clients) {
        const [addr, bits] = c.split('/')
        const v = isIP(addr)
        if (v === 0) continue
        this.clients.addSubnet(addr, bits === undefined ? (v === 4 ? 32 : 128) : Number(bits), v === 4 ? 'ipv4' : 'ipv6')
      }
    }
    const globalDeny = compileRules(f.deny, 'forward.deny')
    this.global = { key: `${gen}:`, partition: FORWARD_POOL, allow: compileRules(f.allow, 'forward.allow'), allowAt: 'forward.allow', deny: globalDeny }
    const partitions = [FORWARD_POOL]
    for (const u of f.users) {
      const own = u.allow !== undefined || u.deny !== undefined
      const at = `forward.users[${u.name}]`
      const scope: ForwardScope = own
        ? {
            key: `${gen}:${u.name}`,
            partition: `${FORWARD_POOL}@${u.name}`,
            allow: u.allow === undefined ? this.global.allow : compileRules(u.allow, `${at}.allow`),
            allowAt: u.allow === undefined ? 'forward.allow' : `${at}.allow`,
            deny: [...globalDeny, ...compileRules(u.deny ?? [], `${at}.deny`)]
          }
        : this.global
      if (own) partitions.push(scope.partition)
      this.users.set(u.name, { name: u.name, hash: parseHash(u.password_hash), scope })
    }
    // As security/basic-auth.ts: an unknown user costs one scrypt too, or the 407's timing tells
    // which user names exist (CWE-208).
    let decoy: ParsedHash | undefined
    for (const u of this.users.values()) if (decoy === undefined) decoy = u.hash
    this.decoy = decoy
    f.filters.blocklists.forEach((file, i) => {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const d = line.replace(/#.*/, '').trim().toLowerCase().replace(/^\*?\./, '').replace(/\.$/, '')
        if (d !== '' && !this.blocked.has(d)) this.blocked.set(d, i)
      }
    })
    this.paths = f.filters.paths.map((p) => new RegExp(p))
    this.types = f.filters.content_types.map((t) => t.toLowerCase())
    this.strip = f.strip_headers.map((h) => h.toLowerCase())
    const cache: RouteCacheConfig | undefined = f.cache?.enabled === true ? f.cache : undefined
    const methods = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']
    this.route = {
      name: FORWARD_ROUTE,
      pool: undefined,
      split: undefined,
      maxBodyBytes: config.limits.max_body_bytes,
      cache,
      compress: undefined,
      websocket: { enabled: false, idle_timeout_ms: 0, max_tunnels: 0 },
      // One more try of an idempotent request whose connection failed (a stale keep-alive socket).
      retries: { attempts: 1, on_status: [], methods, buffer_body_bytes: 65536 },
      retryOn: new Set(),
      retryMethods: new Set(methods),
      timeoutMs: 0,
      invalidates: partitions,
      // The access log's global settings apply (forward-handler.ts writes its lines).
      accessLog: undefined,
      // The forward proxy has its own rules (admit, checkTarget); route access rules do not apply.
      firewall: undefined
    }
  }

  /** Whether the cache store is needed. */
  get caches(): boolean {
    return this.route.cache !== undefined
  }

  /**
   * Who the client is: a user by Proxy-Authorization: Basic (RFC 9110 section 11.7.2, RFC 7617),
   * else an admitted address; 407 asks for credentials, 403 when no credentials could help.
   */
  admit(peer: string, authorization: string | undefined): Admission | Promise<Admission> {
    if (authorization !== undefined && this.users.size > 0) return this.authenticate(authorization)
    if (this.clients !== undefined && this.clients.check(peer, isIP(peer) === 6 ? 'ipv6' : 'ipv4')) return { ok: true, scope: this.global, user: undefined }
    if (this.users.size > 0) return { ok: false, status: 407, denial: deny('forward.users', 'proxy authentication required') }
    return { ok: false, status: 403, denial: deny('forward.clients', `client ${peer} is not admitted`) }
  }

  private async authenticate(header: string): Promise<Admission> {
    const bad: Admission = { ok: false, status: 407, denial: deny('forward.users', 'invalid credentials') }
    const m = /^Basic +([A-Za-z0-9+/]+=*) *$/i.exec(header)
    if (m === null) return bad
    const digest = createHash('sha256').update(header).digest('base64')
    const known = this.verified.get(digest)
    if (known !== undefined) {
      const u = this.users.get(known) as User
      return { ok: true, scope: u.scope, user: u.name }
    }
    const decoded = Buffer.from(m[1], 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon < 0) return bad
    const u = this.users.get(decoded.slice(0, colon))
    const against = u?.hash ?? this.decoy
    if (against === undefined) return bad
    const ok = await verifyPassword(decoded.slice(colon + 1), against)
    if (!ok || u === undefined || u.hash === undefined) return bad
    if (this.verified.size >= VERIFIED_MAX) this.verified.delete(this.verified.keys().next().value as string)
    this.verified.set(digest, u.name)
    return { ok: true, scope: u.scope, user: u.name }
  }

  /**
   * The destination before any lookup: CONNECT ports, deny rules, block lists, allow rules, and
   * for an address target the special-address guard. A name no allow rule names is refused here,
   * without DNS.
   */
  checkTarget(scope: ForwardScope, host: string, port: number, connect: boolean): Denial | undefined {
    if (connect && !this.connectPorts.has(port)) return deny('forward.connect_ports', `CONNECT to port ${port} is not allowed`)
    const literal = isIP(host) !== 0
    const ip = literal ? unmapAddress(host) : host
    for (const r of scope.deny) {
      if (literal ? matchesAddress(r, ip, port, true) : matchesName(r, host, port)) return deny(r.id, r.text)
    }
    if (!literal && this.blocked.size > 0) {
      for (let d = host; d !== ''; d = d.slice(d.indexOf('.') + 1 || d.length)) {
        const file = this.blocked.get(d)
        if (file !== undefined) return deny(`forward.filters.blocklists[${file}]`, `domain ${d} is blocked`)
      }
    }
    let allowed = false
    for (const r of scope.allow) {
      if (literal ? matchesAddress(r, ip, port, true) : matchesName(r, host, port)) {
        allowed = true
        break
      }
    }
    if (!allowed) return deny(scope.allowAt, `no rule allows ${target(host, port)}`)
    return literal ? this.checkAddress(scope, ip, port) : undefined
  }

  /**
   * An address about to be connected to (an address target, or what a name resolved to): deny
   * rules by CIDR, and the special-address guard unless an allow rule names the address.
   */
  checkAddress(scope: ForwardScope, address: string, port: number): Denial | undefined {
    const ip = unmapAddress(address)
    for (const r of scope.deny) if (r.cidr !== undefined && matchesAddress(r, ip, port, false)) return deny(r.id, `${r.text}: ${ip}`)
    const kind = specialAddress(ip)
    if (kind === undefined) return undefined
    for (const r of scope.allow) if (namesAddress(r, ip, port)) return undefined
    return deny('forward.ssrf', `${ip} is a ${kind} address and no allow rule names it`)
  }

  /** The path filters (regular expressions over the path and query of a plain request). */
  checkPath(pathAndQuery: string): Denial | undefined {
    for (let i = 0; i < this.paths.length; i++) {
      if (this.paths[i].test(pathAndQuery)) return deny(`forward.filters.paths[${i}]`, `path matches ${this.paths[i].source}`)
    }
    return undefined
  }

  /** The content type filter, on a response's Content-Type. */
  checkType(contentType: unknown): Denial | undefined {
    if (this.types.length === 0 || contentType === undefined) return undefined
    const raw = Array.isArray(contentType) ? String(contentType[0]) : String(contentType)
    const type = raw.split(';')[0].trim().toLowerCase()
    for (let i = 0; i < this.types.length; i++) {
      const t = this.types[i]
      if (t === type || (t.endsWith('/*') && type.startsWith(t.slice(0, -1)))) return deny(`forward.filters.content_types[${i}]`, `content type ${type} is blocked`)
    }
    return undefined
  }

  /** The fields sent to an origin: no reverse proxy conventions, and nothing identifying in anonymous mode. */
  readonly rewrite = (h: Record<string, string | string[]>): void => {
    // A forward proxy announces itself with Via and X-Forwarded-For (as Squid does); the
    // X-Forwarded-Host/Proto and X-Real-IP of the reverse side say nothing an origin needs here.
    delete h['x-forwarded-host']
    delete h['x-forwarded-proto']
    delete h['x-real-ip']
    if (!this.anonymous) return
    delete h.via
    delete h['x-forwarded-for']
    delete h.forwarded
    delete h['x-request-id']
    for (const name of this.strip) delete h[name]
  }

  /** The settings of the pool of one origin (a single member, no ejection: one origin is all there is). */
  poolConfig(origin: string): PoolConfig {
    const f = this.config
    return {
      members: [{ url: origin, weight: 1, name: 'origin' }],
      outlier: { consecutive_failures: 0, base_ejection_ms: 10000, max_ejection_ms: 300000, max_ejected_percent: 0 },
      panic_threshold_percent: 0,
      retry_budget: { percent: 20, min_per_second: 3, window_ms: 10000 },
      balancer: 'round_robin',
      host_header: 'preserve',
      timeouts: { connect_ms: f.timeouts.connect_ms, request_ms: f.timeouts.request_ms },
      max_connections: f.max_connections_per_origin,
      max_requests: 0,
      queue: { size: 0, timeout_ms: 1000 },
      tls: { verify: true },
      http2: false
    }
  }
}

/** The client's Proxy-Authorization, if it sent exactly one. */
export function proxyAuthorization(headers: IncomingHttpHeaders): string | undefined {
  const v = headers['proxy-authorization']
  return typeof v === 'string' ? v : undefined
}
