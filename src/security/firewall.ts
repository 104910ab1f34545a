/**
 * The application firewall of routes: the top-level `access` rules, then the route's, compiled
 * once per config load into a RouteFirewall (RouteRuntime.firewall; undefined for a route with
 * no rules, so such a route pays nothing). Rules run in order; each applies when `when` holds
 * and `unless` does not, and then:
 *
 *   action: allow  -> admitted now; later rules do not run
 *   action: deny   -> 403
 *   basic / jwt    -> no or bad credentials: 401 with WWW-Authenticate (RFC 7617, RFC 6750);
 *                     a JWT without the claims asked for: 403 (insufficient_scope); else next rule
 *   rate_limit     -> over the limit: 429 with Retry-After and RateLimit fields; else next rule
 *
 * and a request that passes every rule is admitted. A check is synchronous until a rule needs
 * I/O or a thread (scrypt, jose's signature check, the limiter): only then is a Promise made.
 */
import { STATUS_CODES } from 'node:http'
import type { AccessRuleConfig, Config } from '../config/schema.js'
import { compileConditions, type Condition, type FirewallRequest } from './access-conditions.js'
import { BasicAuth, type AuthOutcome } from './basic-auth.js'
import type { FirewallMetrics } from './firewall-metrics.js'
import { JwtCheck, type JwtOutcome } from './jwt-check.js'
import type { RedisClient } from '../cache/redis-connection.js'
import { RateLimit, type LimitOutcome, type LimiterRegistry, type ThrottledLog } from './rate-limit.js'

/** What the firewall decided; a refusal carries the whole answer. */
export interface FirewallDecision {
  readonly admit: boolean
  /** For the access log (ClientWriter.firewall): allow, deny:<rule>, unauthorized:<rule>, rate_limited:<rule>. */
  readonly label: string
  /** Who authenticated (Basic user, JWT sub). */
  readonly user: string | undefined
  readonly status: number
  readonly headers: Readonly<Record<string, string>> | undefined
  readonly body: string
}

/** What compiling needs from the app: metrics, the rate limiters, the Redis error log. */
export interface FirewallContext {
  readonly metrics: FirewallMetrics
  readonly limiters: LimiterRegistry
  readonly storeErrors: ThrottledLog
  /** The Redis client of shared rate limits for this config (made on first use). */
  redis(config: Config): RedisClient
}

type Action =
  | { readonly kind: 'allow' }
  | { readonly kind: 'deny' }
  | { readonly kind: 'basic'; readonly basic: BasicAuth }
  | { readonly kind: 'jwt'; readonly jwt: JwtCheck }
  | { readonly kind: 'rate_limit'; readonly limit: RateLimit }

interface CompiledRule {
  readonly name: string
  readonly applies: Condition
  readonly action: Action
}

const ALLOW: FirewallDecision = Object.freeze({ admit: true, label: 'allow', user: undefined, status: 0, headers: undefined, body: '' })

/**
 * Compiles a list of rules. `scope` is "global" for the top-level list (its default names are
 * `access[i]`) or the route's name (`<route>.access[i]`); rate limits of the global list are
 * one bucket per client across every route.
 */
export function compileRules(rules: readonly AccessRuleConfig[], scope: string, ctx: FirewallContext, config: Config): CompiledRule[] {
  const redis = (): RedisClient => ctx.redis(config)
  return rules.map((r, i) => {
    const name = r.name ?? (scope === 'global' ? `access[${i}]` : `${scope}.access[${i}]`)
    const when = r.when === undefined ? undefined : compileConditions(r.when)
    const unless = r.unless === undefined ? undefined : compileConditions(r.unless)
    const applies: Condition = when === undefined
      ? unless === undefined ? () => true : (req, user) => !unless(req, user)
      : unless === undefined ? when : (req, user) => when(req, user) && !unless(req, user)
    let action: Action
    if (r.basic !== undefined) action = { kind: 'basic', basic: new BasicAuth(r.basic.realm, r.basic.users) }
    else if (r.jwt !== undefined) action = { kind: 'jwt', jwt: new JwtCheck(r.jwt) }
    else if (r.rate_limit !== undefined) action = { kind: 'rate_limit', limit: new RateLimit(name, r.rate_limit, ctx.limiters.get(scope, name, r.rate_limit, config.firewall.key_prefix, redis)) }
    else action = { kind: r.action === 'allow' ? 'allow' : 'deny' }
    return { name, applies, action }
  })
}

/** The rules one route runs (the global ones first), with its metric labels. */
export class RouteFirewall {
  constructor(private readonly route: string, private readonly rules: readonly CompiledRule[], private readonly ctx: FirewallContext) {}

  /** The decision for a request; a Promise only once a rule that needs one is reached. */
  check(req: FirewallRequest): FirewallDecision | Promise<FirewallDecision> {
    return this.run(req, 0, undefined)
  }

  private run(req: FirewallRequest, from: number, user: string | undefined): FirewallDecision | Promise<FirewallDecision> {
    const rules = this.rules
    for (let i = from; i < rules.length; i++) {
      const rule = rules[i]
      if (!rule.applies(req, user)) continue
      const a = rule.action
      let pending: AuthOutcome | JwtOutcome | Promise<AuthOutcome | JwtOutcome | LimitOutcome>
      switch (a.kind) {
        case 'allow': return admitted(user)
        case 'deny': return this.refuse(rule, 403, 'deny', 'deny', `denied by access rule ${rule.name}`, undefined, user)
        case 'basic': pending = a.basic.check(req.headers); break
        case 'jwt': pending = a.jwt.check(req.headers); break
        case 'rate_limit': pending = a.limit.check(req); break
      }
      if (pending instanceof Promise) {
        return pending.then((o) => {
          const next = this.settle(rule, req, o, user)
          return typeof next === 'object' ? next : this.run(req, i + 1, next)
        })
      }
      const next = this.settle(rule, req, pending, user)
      if (typeof next === 'object') return next
      user = next
    }
    return admitted(user)
  }

  /** A refusal (a decision), or the user to go on with. */
  private settle(rule: CompiledRule, req: FirewallRequest, o: AuthOutcome | JwtOutcome | LimitOutcome, user: string | undefined): FirewallDecision | string | undefined {
    const a = rule.action
    if ('kind' in o) {
      if (o.kind === 'ok') return user
      const limit = (a as { limit: RateLimit }).limit
      if (o.kind === 'error') {
        // Fail open: a limiter that cannot count must not take the route down with Redis.
        this.ctx.metrics.rateLimitErrors.labels(this.route, rule.name).inc()
        this.ctx.storeErrors.report({ route: this.route, rule: rule.name, err: (o.error as Error)?.message ?? String(o.error) }, 'rate limit store unavailable: requests pass unlimited (fail open)')
        return user
      }
      this.ctx.metrics.rateLimited.labels(this.route, rule.name).inc()
      return decision(false, `rate_limited:${rule.name}`, user, 429, limit.headers(o.retryAfterS), `rate limit ${rule.name} exceeded, retry in ${o.retryAfterS} s`)
    }
    if (o.ok) return o.user ?? user
    if (a.kind === 'basic') {
      return this.refuse(rule, 401, 'unauthorized', o.reason, `access rule ${rule.name} requires credentials`, { 'www-authenticate': a.basic.challenge }, user)
    }
    const jwt = (a as { jwt: JwtCheck }).jwt
    const detail = (o as { detail: string }).detail
    if (o.reason === 'missing_credentials') {
      return this.refuse(rule, 401, 'unauthorized', o.reason, `access rule ${rule.name} requires a bearer token`, { 'www-authenticate': jwt.challenge }, user)
    }
    if (o.reason === 'insufficient_claims') {
      return this.refuse(rule, 403, 'deny', o.reason, `access rule ${rule.name}: ${detail}`, { 'www-authenticate': jwt.errorChallenge('insufficient_scope', detail) }, user)
    }
    return this.refuse(rule, 401, 'unauthorized', 'invalid_token', `access rule ${rule.name}: ${detail}`, { 'www-authenticate': jwt.errorChallenge('invalid_token', detail) }, user)
  }

  private refuse(rule: CompiledRule, status: number, verdict: string, reason: string, text: string, headers: Record<string, string> | undefined, user: string | undefined): FirewallDecision {
    this.ctx.metrics.denials.labels(this.route, rule.name, reason).inc()
    return decision(false, `${verdict}:${rule.name}`, user, status, headers, text)
  }
}

function admitted(user: string | undefined): FirewallDecision {
  return user === undefined ? ALLOW : decision(true, 'allow', user, 0, undefined, '')
}

function decision(admit: boolean, label: string, user: string | undefined, status: number, headers: Record<string, string> | undefined, text: string): FirewallDecision {
  return { admit, label, user, status, headers, body: admit ? '' : `${status} ${STATUS_CODES[status] ?? 'Error'}: ${text}\n` }
}

/**
 * Every route's firewall for a config: the global rules (compiled once, so their Basic cache,
 * JWKS and rate-limit buckets are shared), then the route's. Routes without rules get none.
 * Throws (a JWKS file that cannot be read) so that a load or reload with it is refused.
 */
export function compileFirewalls(config: Config, ctx: FirewallContext | undefined): Map<string, RouteFirewall> {
  const out = new Map<string, RouteFirewall>()
  if (config.access.length === 0 && config.routes.every((r) => r.access.length === 0)) return out
  if (ctx === undefined) throw new Error('access rules need the firewall (buildRuntime without a FirewallContext)')
  const global = compileRules(config.access, 'global', ctx, config)
  for (const r of config.routes) {
    if (global.length === 0 && r.access.length === 0) continue
    out.set(r.name, new RouteFirewall(r.name, [...global, ...compileRules(r.access, r.name, ctx, config)], ctx))
  }
  return out
}
