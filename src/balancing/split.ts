import type { SplitConfig } from '../config/schema.js'
import { unitHash } from './hash.js'

export type AssignmentSource = 'override' | 'cookie' | 'header' | 'new'

export interface Variant<T> {
  readonly name: string
  readonly weight: number
  readonly target: T
  /** Set-Cookie value that pins a client to this variant. */
  readonly setCookie: string
}

export interface Assignment<T> {
  readonly variant: Variant<T>
  readonly source: AssignmentSource
}

/**
 * Chooses a variant of an A/B or multivariate split. In order: a QA override header naming a
 * variant; the sticky cookie the proxy set earlier; a hash of the sticky header (a user id), so
 * the same value always lands on the same variant on every proxy instance; otherwise a weighted
 * random draw, which the caller pins with the variant's Set-Cookie.
 */
export class SplitAssigner<T> {
  readonly name: string
  readonly cookieName: string
  readonly stickyHeader: string | undefined
  readonly overrideHeader: string
  readonly variants: readonly Variant<T>[]
  private readonly byName = new Map<string, Variant<T>>()
  private readonly cumulative: number[] = []
  private readonly total: number

  constructor(cfg: SplitConfig, targetOf: (pool: string) => T, private readonly rand: () => number = Math.random) {
    this.name = cfg.name
    this.cookieName = cfg.sticky.cookie ?? `sy_split_${cfg.name.replace(/[^A-Za-z0-9_-]/g, '_')}`
    this.stickyHeader = cfg.sticky.header?.toLowerCase()
    this.overrideHeader = cfg.override_header.toLowerCase()
    let sum = 0
    this.variants = cfg.variants.map((v) => {
      sum += v.weight
      this.cumulative.push(sum)
      const variant: Variant<T> = {
        name: v.name,
        weight: v.weight,
        target: targetOf(v.pool),
        setCookie: `${this.cookieName}=${v.name}; Path=/; Max-Age=${cfg.sticky.cookie_max_age_s}; HttpOnly; SameSite=Lax`
      }
      this.byName.set(v.name, variant)
      return variant
    })
    this.total = sum
  }

  variant(name: string | undefined): Variant<T> | undefined {
    return name === undefined ? undefined : this.byName.get(name)
  }

  assign(override: string | undefined, cookie: string | undefined, stickyValue: string | undefined): Assignment<T> {
    const forced = this.variant(override)
    if (forced !== undefined) return { variant: forced, source: 'override' }
    const pinned = this.variant(cookie)
    // A cookie naming a variant whose weight is now 0 is re-drawn: the operator turned it off.
    if (pinned !== undefined && pinned.weight > 0) return { variant: pinned, source: 'cookie' }
    if (stickyValue !== undefined && stickyValue !== '') {
      return { variant: this.bucket(unitHash(`${this.name}\u0000${stickyValue}`)), source: 'header' }
    }
    return { variant: this.bucket(this.rand()), source: 'new' }
  }

  private bucket(u: number): Variant<T> {
    const x = u * this.total
    const c = this.cumulative
    for (let i = 0; i < c.length; i++) if (x < c[i]) return this.variants[i]
    return this.variants[this.variants.length - 1]
  }
}
