/** The hit header memo answers field for field what the library and forClient() would. */
import t from 'tap'
import CachePolicy from 'http-cache-semantics'
import { HitHeaders, httpDate } from '../../src/cache/hit-headers.js'
import { forClient, forLibrary } from '../../src/cache/response-rules.js'

type Headers = Record<string, string | string[] | undefined>
type TapTest = Parameters<Parameters<typeof t.test>[0]>[0]
const OPTIONS = { shared: true, cacheHeuristic: 0.1, immutableMinTimeToLive: 24 * 3600 * 1000 }
const RULES = { shareSetCookie: true, targeted: ['cdn-cache-control'] }

/** A clock far from the real one: a memo reading Date.now() instead of the policy's clock shows. */
const EPOCH = Date.UTC(2031, 4, 17, 9, 30, 12, 250)

/** A stored policy as the cache makes one, its twin without the memo, and their one clock. */
function policies(status: number, received: Headers, ageMs: number): { memo: CachePolicy; plain: CachePolicy; clock: { now: number } } {
  const stored = EPOCH - ageMs
  const lib = forLibrary(status, received, RULES, stored)
  const req = { url: '/a', method: 'GET', headers: { host: 'example.test' } }
  const obj = new CachePolicy(req, { status: lib.status, headers: lib.headers as CachePolicy.Headers }, OPTIONS).toObject()
  // The stored response time, as if it arrived ageMs ago.
  const at = { ...obj, t: stored } as CachePolicy.CachePolicyObject
  const memo = CachePolicy.fromObject(at)
  const plain = CachePolicy.fromObject(at)
  // One clock for both (Age is rounded to the second: two readings could straddle it).
  const clock = { now: EPOCH }
  for (const p of [memo, plain]) (p as unknown as { now(): number }).now = () => clock.now
  return { memo, plain, clock }
}

/** Same fields, same values, same order (the order goes on the wire). */
function sameFields(t: TapTest, got: Headers | undefined, want: Headers, msg: string): void {
  t.strictSame(got, want, msg)
  t.strictSame(Object.keys(got ?? {}), Object.keys(want), `${msg} (field order)`)
}

const CASES: { name: string; status: number; headers: Headers; ageMs: number }[] = [
  { name: 'origin Date, max-age', status: 200, headers: { date: new Date(EPOCH - 5000).toUTCString(), 'cache-control': 'public, max-age=60', 'content-type': 'text/plain', etag: '"a"' }, ageMs: 5000 },
  { name: 'no Date from the origin', status: 200, headers: { 'cache-control': 'max-age=600', 'x-a': '1' }, ageMs: 2000 },
  { name: 'hop-by-hop and Connection-named fields', status: 200, headers: { 'cache-control': 'max-age=60', connection: 'x-secret, close', 'x-secret': 'no', 'keep-alive': 'timeout=5', te: 'trailers', 'x-kept': 'yes' }, ageMs: 0 },
  { name: '1xx warnings go, 2xx stay', status: 200, headers: { 'cache-control': 'max-age=60', warning: '110 - "stale", 214 - "transformed"' }, ageMs: 1000 },
  { name: 'a status the library does not know, must-revalidate hidden', status: 299, headers: { 'cache-control': 'max-age=60, must-revalidate', 'set-cookie': 'a=1' }, ageMs: 1000 },
  { name: 'targeted field, Expires', status: 200, headers: { 'cdn-cache-control': 'max-age=300', 'cache-control': 'no-store', expires: 'Thu, 01 Jan 2099 00:00:00 GMT' }, ageMs: 0 },
  { name: 'a bad Date, an old Age', status: 200, headers: { date: 'yesterday', age: '30', 'cache-control': 'max-age=60' }, ageMs: 0 }
]

t.test('client(library()) is forClient(responseHeaders()) for stored responses of every kind', async (t) => {
  for (const c of CASES) {
    const { memo, plain, clock } = policies(c.status, c.headers, c.ageMs)
    const hits = HitHeaders.install(memo)
    t.ok(hits, `${c.name}: memoised`)
    for (let i = 0; i < 3; i++) {
      const lib = memo.responseHeaders() as Headers
      const want = plain.responseHeaders() as Headers
      sameFields(t, lib, want, `${c.name}: the library's view, hit ${i + 1}`)
      const client = hits?.client(lib)
      sameFields(t, client, forClient(want), `${c.name}: the client's view, hit ${i + 1}`)
      // Callers change what they get (a route's strip list deletes fields): the memo must not see it.
      for (const k of Object.keys(client ?? {})) delete client?.[k]
      for (const k of Object.keys(lib)) delete lib[k]
      t.not(memo.responseHeaders(), lib, 'a fresh object each call')
      // The next hit comes 1.6 s later (Age and Date move on).
      clock.now += 1600
    }
    // Another object than the last one made: forClient itself.
    const other = { ...(memo.responseHeaders() as Headers), 'x-extra': '1' }
    sameFields(t, hits?.client(other), forClient(other), `${c.name}: any other object goes through forClient`)
    // evaluateRequest (which calls responseHeaders inside) answers as before.
    const req = { url: '/a', method: 'GET', headers: { host: 'example.test' } }
    t.strictSame(memo.evaluateRequest(req), plain.evaluateRequest(req), `${c.name}: evaluateRequest unchanged`)
  }
})

t.test('past a day of age (heuristic freshness may add a 113 warning) the library answers', async (t) => {
  const lm = new Date(EPOCH - 400 * 24 * 3600 * 1000).toUTCString()
  const old = policies(200, { 'last-modified': lm }, 2 * 24 * 3600 * 1000)
  t.equal(HitHeaders.install(old.memo), undefined, 'no memo for a policy already a day old')
  const warned = old.plain.responseHeaders() as Headers
  t.match(warned.warning, /113/, 'the library warns')
  sameFields(t, old.memo.responseHeaders() as Headers, warned, 'and the policy answers as the library does')

  // Memoised at 23 hours, served at 25: the warning appears as the library would add it.
  const { memo, plain, clock } = policies(200, { 'last-modified': lm }, 23 * 3600 * 1000)
  const hits = HitHeaders.install(memo)
  t.ok(hits, 'memoised under a day')
  t.notOk((memo.responseHeaders() as Headers).warning, 'no warning at 23 hours')
  clock.now += 2 * 3600 * 1000
  const want = plain.responseHeaders() as Headers
  t.match(want.warning, /113/, 'the library warns at 25 hours')
  const lib = memo.responseHeaders() as Headers
  sameFields(t, lib, want, 'so does the memoised policy')
  sameFields(t, hits?.client(lib), forClient(want), 'and the client sees it')
})

t.test('httpDate: toUTCString of the same second, whatever the milliseconds', async (t) => {
  const base = Date.UTC(2026, 11, 3, 13, 4, 28)
  for (const ms of [base, base + 999, base + 1000, base - 1, base + 86_400_000]) {
    t.equal(httpDate(ms), new Date(ms).toUTCString())
  }
})
