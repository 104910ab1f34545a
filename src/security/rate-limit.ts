/**
 * Rate limits through rate-limiter-flexible: RateLimiterMemory in this process, RateLimiterRedis
 * shared by every instance on one Redis (its Lua script makes each count atomic). A limit is
 * `requests` per `per`, plus `burst` extra requests, as the library's BurstyRateLimiter gives
 * them: the library counts in fixed windows, so this is its token-bucket-like mode (a bucket of
 * `requests + burst`, refilled per window), not a continuous token bucket.
 *
 * Redis down or slow (cache.redis-style bounded commands, no offline queue): the check fails
 * OPEN, the request goes through, counted and logged at most once per interval. The library's
 * insuranceLimiter would instead fall back to a per-process limit, but it swallows the error (no
 * count, no log), and the issue asks for fail open.
 *
 * Answers follow draft-ietf-httpapi-ratelimit-headers-10 (section 4 RateLimit-Policy, section 5
 * RateLimit, Structured Field lists): `RateLimit-Policy: "<rule>";q=<requests>;w=<seconds>` and
 * `RateLimit: "<rule>";r=<remaining>;t=<seconds>`, with Retry-After (RFC 9110 section 10.2.3).
 */
import { createHash } from 'node:crypto'
import { BurstyRateLimiter, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import type { AccessRuleConfig } from '../config/schema.js'
import type { RedisClient } from '../cache/redis-connection.js'
import { fieldValue, type FirewallRequest } from './access-conditions.js'

export type RateLimitConfig = NonNullable<AccessRuleConfig['rate_limit']>

export interface Limiter {
  consume(key: string): Promise<RateLimiterRes>
}

const PERIOD_S = { second: 1, minute: 60, hour: 3600 } as const

/** What one check found: admitted (with what is left), limited, or the store failed. */
export type LimitOutcome =
  | { readonly kind: 'ok' }
  | { readonly kind: 'limited'; readonly retryAfterS: number }
  | { readonly kind: 'error'; readonly error: unknown }

const OK: LimitOutcome = Object.freeze({ kind: 'ok' })

/** Creates limiters and keeps them across reloads while their rule is unchanged (counts survive a reload). */
export class LimiterRegistry {
  private readonly limiters = new Map<string, { signature: string; limiter: Limiter }>()

  /** The limiter of rule `rule` in `scope` ("global" or a route name); `redis` is called only for store: redis. */
  get(scope: string, rule: string, cfg: RateLimitConfig, keyPrefix: string, redis: () => RedisClient): Limiter {
    const id = `${scope}:${rule}`
    const prefix = `${keyPrefix}${id}`
    const signature = JSON.stringify([prefix, cfg.requests, cfg.per, cfg.burst, cfg.store])
    const known = this.limiters.get(id)
    if (known !== undefined && known.signature === signature) return known.limiter
    const duration = PERIOD_S[cfg.per]
    const make = (keyPrefix: string, points: number, seconds: number): RateLimiterMemory | RateLimiterRedis => cfg.store === 'redis'
      // rejectIfRedisNotReady: while Redis is away the check fails at once instead of waiting out a timeout.
      ? new RateLimiterRedis({ storeClient: redis(), keyPrefix, points, duration: seconds, rejectIfRedisNotReady: true })
      : new RateLimiterMemory({ keyPrefix, points, duration: seconds })
    const main = make(prefix, cfg.requests, duration)
    // The burst refills in the time the rate would take to spend it (at least one second).
    const limiter: Limiter = cfg.burst > 0
      ? new BurstyRateLimiter(main, make(`${prefix}:burst`, cfg.burst, Math.max(1, Math.ceil((cfg.burst / cfg.requests) * duration))))
      : main
    this.limiters.set(id, { signature, limiter })
    return limiter
  }
}

/** One rate limit rule, compiled: its key, its limiter, its policy header. */
export class RateLimit {
  /** RateLimit-Policy of its answers (draft-ietf-httpapi-ratelimit-headers-10 section 4). */
  readonly policy: string
  readonly windowS: number
  private readonly keyHeader: string | undefined

  constructor(readonly rule: string, cfg: RateLimitConfig, private readonly limiter: Limiter) {
    this.windowS = PERIOD_S[cfg.per]
    this.policy = `${sfString(rule)};q=${cfg.requests};w=${this.windowS}`
    this.keyHeader = cfg.key_header?.toLowerCase()
  }

  /** The bucket a request counts against: its key header's value, else its client address. */
  key(req: FirewallRequest): string {
    const v = this.keyHeader === undefined ? undefined : fieldValue(req.headers, this.keyHeader)
    if (v === undefined) return `ip:${req.clientIp}`
    // Long values (tokens) are hashed: bounded key size in memory and in Redis.
    return v.length <= 64 ? `h:${v}` : `hs:${createHash('sha256').update(v).digest('base64')}`
  }

  check(req: FirewallRequest): Promise<LimitOutcome> {
    return this.limiter.consume(this.key(req)).then(() => OK, (rej: unknown): LimitOutcome => {
      if (rej instanceof RateLimiterRes) return { kind: 'limited', retryAfterS: Math.max(1, Math.ceil(rej.msBeforeNext / 1000)) }
      return { kind: 'error', error: rej }
    })
  }

  /** The fields of a 429 (remaining quota 0 until the window turns). */
  headers(retryAfterS: number): Record<string, string> {
    return {
      'retry-after': String(retryAfterS),
      'ratelimit-policy': this.policy,
      ratelimit: `${sfString(this.rule)};r=0;t=${retryAfterS}`
    }
  }
}

/** A Structured Field sf-string (RFC 8941 section 3.3.3): quotes and backslashes escaped. */
function sfString(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`
}

/** Logs an error at most once per interval, with how many were left unlogged since. */
export class ThrottledLog {
  private last = -Infinity
  private suppressed = 0

  constructor(private readonly intervalMs: () => number, private readonly write: (fields: object, msg: string) => void, private readonly now: () => number = Date.now) {}

  report(fields: object, msg: string): void {
    const t = this.now()
    if (t - this.last < this.intervalMs()) {
      this.suppressed++
      return
    }
    this.write({ ...fields, suppressed: this.suppressed }, msg)
    this.last = t
    this.suppressed = 0
  }
}
