/**
 * A cache hit's header fields without copying and reformatting every stored field on every hit
 * (issue 15). http-cache-semantics' responseHeaders() copies the stored fields without the
 * hop-by-hop ones, then sets Age and formats Date from the clock; forClient() copies the result
 * again to restore what the library was not shown. Everything but Age and Date depends on the
 * stored response alone (a parsed policy is never mutated), so both copies are made once per
 * parsed policy, and each hit spreads them and adds Age and Date.
 *
 * The answers are the library's and forClient()'s, field for field: past a day of age, where the
 * library may add a 113 warning, the library's own method answers.
 */
import CachePolicy from 'http-cache-semantics'
import { forClient, keepsOriginDate } from './response-rules.js'

type Headers = Record<string, string | string[] | undefined>
type Clock = { now(): number }

/** The library adds `113 - "rfc7234 5.5.4"` beyond this age (heuristic freshness over a day). */
const WARNING_AGE_S = 24 * 3600

let dateSecond = Number.NaN
let dateText = ''
/** `new Date(ms).toUTCString()`, formatted once per second (formatting costs about a microsecond). */
export function httpDate(ms: number): string {
  const s = Math.floor(ms / 1000)
  if (s !== dateSecond) {
    dateText = new Date(s * 1000).toUTCString()
    dateSecond = s
  }
  return dateText
}

export class HitHeaders {
  readonly #policy: CachePolicy
  /** responseHeaders() as made once; Age and Date are set again on every copy. */
  readonly #library: Headers
  /** forClient(#library): Date is the origin's when it sent one (else each copy takes the hit's). */
  readonly #client: Headers
  readonly #originDate: boolean
  /** The last object library() made: the one client() can build from its memo. */
  #last: Headers | undefined

  private constructor(policy: CachePolicy, library: Headers) {
    this.#policy = policy
    this.#library = library
    this.#originDate = keepsOriginDate(library)
    this.#client = forClient(library)
  }

  /**
   * Memoises `policy`'s responseHeaders() on the policy itself (callers, ours and the library's
   * evaluateRequest(), keep calling it). Undefined when the policy is already a day old.
   */
  static install(policy: CachePolicy): HitHeaders | undefined {
    if (policy.age() > WARNING_AGE_S) return undefined
    // Age and Date stay in (each hit overwrites them in place), so every copy keeps the
    // library's field order and no copy gains a property: adding one to a copy is the slow case.
    const library = CachePolicy.prototype.responseHeaders.call(policy) as Headers
    const memo = new HitHeaders(policy, library)
    policy.responseHeaders = () => memo.library() as CachePolicy.Headers
    return memo
  }

  /** What the library's responseHeaders() returns now. */
  library(): Headers {
    const policy = this.#policy
    const age = policy.age()
    if (age > WARNING_AGE_S) return CachePolicy.prototype.responseHeaders.call(policy) as Headers
    // Object.assign, not a spread: a spread copy given fields costs a microsecond in V8 12 (Node 20).
    const h = Object.assign({}, this.#library)
    h.age = `${Math.round(age)}`
    h.date = httpDate((policy as unknown as Clock).now())
    this.#last = h
    return h
  }

  /** forClient(h), from the memo when h is what library() returned last. */
  client(h: Headers): Headers {
    if (h !== this.#last) return forClient(h)
    const out = Object.assign({}, this.#client)
    out.age = h.age
    if (!this.#originDate) out.date = h.date
    return out
  }
}
