import { randomFillSync } from 'node:crypto'
import type { SplitConfig, SplitGuardrailConfig } from '../config/schema.js'
import { fmix32, hash32 } from './hash.js'
import { RampSchedule } from './split-ramp.js'
import { SplitState } from './split-state.js'
import { guardrailBreaches } from './split-guardrail.js'

export type AssignmentSource = 'override' | 'cookie' | 'header' | 'new'

/** The label of the arm holdout clients count under (they get the control's pool). */
export const HOLDOUT = 'holdout'

/** A variant of the split, or the holdout arm (index = number of variants). */
export interface Arm<T> {
  readonly name: string
  readonly index: number
  readonly pool: string
  readonly target: T
  /** The configured weight (the ramp stage in force may say otherwise). */
  readonly weight: number
  /** Seed of this arm's score in the weighted rendezvous draw (from its name). */
  readonly seed: number
}

export interface Assignment<T> {
  readonly arm: Arm<T>
  readonly source: AssignmentSource
  /** Set-Cookie to send: a new client id, or a known client whose variant changed. */
  readonly setCookie: string | undefined
  /** First assignment of this client to this arm: log an exposure. */
  readonly exposure: boolean
  /** The hash of salt and client key (0 for an override): logged instead of the key. */
  readonly keyHash: number
  /** The variant a returning client had before (its cookie said so), when it changed. */
  readonly previous?: string
}

export interface SplitOptions {
  /** Wall-clock milliseconds (ramp times, the window); default Date.now. */
  now?: () => number
  /** The previous runtime's state of a split by this name: adopted when the config is unchanged. */
  previous?: SplitState
  /** A new client id (default 12 random bytes as base64url). */
  newId?: () => string
}

/** Whether a cookie value starts with a client id: 16 base64url characters (96 random bits). */
function isClientId(v: string): boolean {
  for (let i = 0; i < 16; i++) {
    const c = v.charCodeAt(i)
    // 0-9, A-Z, a-z, '-', '_'
    if (!((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 95)) return false
  }
  return true
}
const HOLDOUT_SEED = 0x9e3779b9
/** Holdout shares have a resolution of 0.01% (10,000 buckets, as experiment platforms count). */
const BUCKETS = 10_000

/** Random bytes drawn 3 KiB at a time: one randomBytes call per 256 new clients, not per client. */
const pool = Buffer.alloc(3072)
let poolAt = pool.length

function newClientId(): string {
  if (poolAt + 12 > pool.length) {
    randomFillSync(pool)
    poolAt = 0
  }
  poolAt += 12
  return pool.toString('base64url', poolAt - 12, poolAt)
}


/**
 * Assigns clients to the variants of an A/B or multivariate split, as experiment platforms do.
 * A client's key is the sticky header's value (a user id), else a random id the sticky cookie
 * pins. hash(salt, key) decides, the same on every proxy instance and every request:
 *  - holdout: a further hash of it under 10,000 buckets puts `holdout`% of clients on the
 *    control, counted apart as variant "holdout";
 *  - otherwise a weighted rendezvous draw (highest random weight, Thaler and Ravishankar 1998;
 *    the weighted form -ln(u)/w is Schindelhauer and Schomaker's): each variant scores the
 *    key, the best score wins. A variant's share is its weight over the total, and changing
 *    weights moves only the clients that must move: adding a variant (or raising its weight)
 *    moves clients only into it, exactly its share; a weight of 0 (ramp, guardrail rollback)
 *    moves only that variant's clients, spread over the others by weight, and they come back
 *    when it returns. Contiguous bucket ranges cannot promise this once three variants ramp
 *    at once (a range shifts past its neighbour's). A new salt reshuffles everyone.
 * The override header still forces a variant by name (QA).
 */
export class SplitAssigner<T> {
  readonly name: string
  readonly cookieName: string
  readonly stickyHeader: string | undefined
  readonly overrideHeader: string
  readonly variants: readonly Arm<T>[]
  readonly holdoutArm: Arm<T>
  readonly control: number
  readonly state: SplitState
  readonly guardrail: SplitGuardrailConfig | undefined
  private readonly byName = new Map<string, Arm<T>>()
  private readonly salt: string
  private readonly holdoutBuckets: number
  private readonly ramp: RampSchedule
  private readonly cookieTail: string
  private readonly now: () => number
  private readonly newId: () => string
  /** Weights in force (ramp stage, rollbacks, promotion), recomputed when one of them changes. */
  private readonly effective: Float64Array
  private stage = -1
  private nextChange = -Infinity
  private seenVersion = -1

  constructor(readonly config: SplitConfig, targetOf: (pool: string) => T, opts: SplitOptions = {}) {
    const cfg = config
    this.now = opts.now ?? Date.now
    this.newId = opts.newId ?? newClientId
    this.name = cfg.name
    this.cookieName = cfg.sticky.cookie ?? `sy_split_${cfg.name.replace(/[^A-Za-z0-9_-]/g, '_')}`
    this.cookieTail = `; Path=/; Max-Age=${cfg.sticky.cookie_max_age_s}; HttpOnly; SameSite=Lax`
    this.stickyHeader = cfg.sticky.header?.toLowerCase()
    this.overrideHeader = cfg.override_header.toLowerCase()
    this.salt = cfg.salt ?? cfg.name
    this.holdoutBuckets = Math.round(cfg.holdout * BUCKETS / 100)
    this.variants = cfg.variants.map((v, index) => {
      const arm: Arm<T> = { name: v.name, index, pool: v.pool, target: targetOf(v.pool), weight: v.weight, seed: hash32(v.name) }
      this.byName.set(v.name, arm)
      return arm
    })
    const c = cfg.control === undefined ? 0 : cfg.variants.findIndex((v) => v.name === cfg.control)
    this.control = c < 0 ? 0 : c
    const ctl = this.variants[this.control]
    this.holdoutArm = { name: HOLDOUT, index: this.variants.length, pool: ctl.pool, target: ctl.target, weight: 0, seed: 0 }
    this.guardrail = cfg.guardrail
    const prev = opts.previous
    this.state = prev !== undefined && prev.key === JSON.stringify(cfg) ? prev : new SplitState(cfg, this.now())
    this.ramp = new RampSchedule(cfg.ramp, cfg.variants.map((v) => v.name), this.state.startMs)
    this.effective = new Float64Array(this.variants.length)
  }

  variant(name: string | undefined): Arm<T> | undefined {
    return name === undefined ? undefined : this.byName.get(name)
  }

  assign(override: string | undefined, cookie: string | undefined, stickyValue: string | undefined): Assignment<T> {
    const forced = this.variant(override)
    if (forced !== undefined) return { arm: forced, source: 'override', setCookie: undefined, exposure: false, keyHash: 0 }
    if (stickyValue !== undefined && stickyValue !== '') {
      const h = this.keyHash(stickyValue)
      const arm = this.choose(h)
      return { arm, source: 'header', setCookie: undefined, exposure: this.state.exposed(h, arm.index), keyHash: h }
    }
    if (cookie !== undefined && cookie.length > 17 && cookie.charCodeAt(16) === 46 /* . */) {
      if (isClientId(cookie)) {
        const id = cookie.slice(0, 16)
        const h = this.keyHash(id)
        const arm = this.choose(h)
        const last = cookie.slice(17)
        if (last === arm.name) return { arm, source: 'cookie', setCookie: undefined, exposure: false, keyHash: h }
        // A ramp, rollback or promotion moved this client: a new exposure, and the cookie says so.
        return { arm, source: 'cookie', setCookie: this.setCookie(id, arm), exposure: true, keyHash: h, previous: last }
      }
    }
    if (cookie !== undefined) {
      // A cookie that names a variant (set before client ids, or by hand) pins it while its
      // weight in force is above 0, as it always did; once that is 0 the client is drawn anew.
      const named = this.byName.get(cookie)
      if (named !== undefined && this.weightNow(named.index) > 0) return { arm: named, source: 'cookie', setCookie: undefined, exposure: false, keyHash: 0 }
    }
    // A new client.
    const id = this.newId()
    const h = this.keyHash(id)
    const arm = this.choose(h)
    return { arm, source: 'new', setCookie: this.setCookie(id, arm), exposure: true, keyHash: h }
  }

  /** Counts an answer of `arm` in the window; at most once a second, the guardrail looks at it. */
  observe(arm: number, status: number, seconds: number): void {
    const now = this.now()
    if (this.state.window.record(arm, status, seconds * 1000, now) && this.guardrail !== undefined) this.checkGuardrail(now)
  }

  /** The split's clock (wall-clock milliseconds). */
  time(): number {
    return this.now()
  }

  /** The ramp's stages in time order (the admin view reads their weights). */
  get rampSchedule(): RampSchedule {
    return this.ramp
  }

  /** Weights in force now, by variant index. */
  weights(): Float64Array {
    this.refresh(this.now())
    return this.effective
  }

  /** The ramp stage in force (-1: before the first, the variants' own weights) and when the next starts. */
  rampStage(): { stage: number; stages: number; nextAtMs: number } {
    this.refresh(this.now())
    return { stage: this.stage, stages: this.ramp.stages.length, nextAtMs: this.nextChange }
  }

  checkGuardrail(now = this.now()): void {
    const g = this.guardrail
    if (g === undefined) return
    const st = this.state
    const stats = st.window.stats(now)
    const breaches = guardrailBreaches(stats, this.control, this.variants.length, g, (arm) => st.rolledBack.has(this.variants[arm].name) || st.promoted === this.variants[arm].name)
    for (const b of breaches) st.rollback(this.name, this.variants[b.arm].name, b.reason, b.detail, now)
  }

  /** Undoes guardrail rollbacks and a promotion. */
  reset(): void {
    this.state.reset(this.name, this.now())
  }

  /** Gives `variant` every client outside the holdout (false: no such variant). */
  promote(variant: string): boolean {
    if (!this.byName.has(variant)) return false
    this.state.promote(this.name, variant, this.now())
    return true
  }

  private keyHash(key: string): number {
    return hash32(`${this.salt}\u0000${key}`)
  }

  private setCookie(id: string, arm: Arm<T>): string {
    return `${this.cookieName}=${id}.${arm.name}${this.cookieTail}`
  }

  private choose(h: number): Arm<T> {
    if (this.holdoutBuckets > 0 && fmix32(h ^ HOLDOUT_SEED) % BUCKETS < this.holdoutBuckets) return this.holdoutArm
    const w = this.current()
    let best = this.variants[this.control]
    let bestScore = Infinity
    for (let i = 0; i < w.length; i++) {
      if (w[i] <= 0) continue
      // u in (0, 1); -ln(u) is exponential, so the lowest -ln(u)/w wins with probability w / sum(w).
      const u = (fmix32(h ^ this.variants[i].seed) + 0.5) / 4294967296
      const score = -Math.log(u) / w[i]
      if (score < bestScore) {
        bestScore = score
        best = this.variants[i]
      }
    }
    return best
  }

  private weightNow(i: number): number {
    return this.current()[i]
  }

  /** The weights in force; the clock is read only while a ramp stage is still to come. */
  private current(): Float64Array {
    if (this.seenVersion !== this.state.version || (this.nextChange !== Infinity && this.now() >= this.nextChange)) this.refresh(this.now())
    return this.effective
  }

  private refresh(now: number): void {
    if (this.seenVersion === this.state.version && now < this.nextChange) return
    const st = this.state
    this.stage = this.ramp.stageAt(now)
    this.nextChange = this.ramp.nextAt(this.stage)
    this.seenVersion = st.version
    const base = this.stage < 0 ? this.variants.map((v) => v.weight) : this.ramp.stages[this.stage].weights
    let sum = 0
    for (let i = 0; i < this.variants.length; i++) {
      const name = this.variants[i].name
      const w = st.promoted !== undefined ? (st.promoted === name ? 1 : 0) : st.rolledBack.has(name) ? 0 : base[i]
      this.effective[i] = w
      sum += w
    }
    // Every variant at 0 (a stage that only names a rolled-back one): the control serves.
    if (sum <= 0) this.effective[this.control] = 1
  }
}
