/** The hit header memo answers field for field what the library and forClient() would. */
import t from 'tap'
import CachePolicy from 'http-cache-semantics'
import { HitHeaders, httpDate } from '../../src/cache/hit-headers.js'
import { forClient, forLibrary } from '../../src/cache/response-rules.js'

type Headers = Record<string, string | string[] | undefined>
const OPTIONS = { shared: true, cacheHeuristic: 0.1, immutableMinTimeToLive: 24 * 3600 * 1000 }
const RULES = { shareSetCookie: true, targeted: ['cdn-cache-control'] }

/** A stored policy as the cache makes one, and its twin without the memo. */
function policies(status: number, received: Headers, ageMs: number): { memo: CachePolicy; plain: CachePolicy } {
  const stored = Date.now() - ageMs
  const lib = forLibrary(status, received, RULES, stored)
  const req = { url: '/a', method: 'GET', headers: { host: 'example.test' } }
  const obj = new CachePolicy(req, { status: lib.status, headers: lib.headers as CachePolicy.Headers }, OPTIONS).toObject()
  // The stored response time, as if it arrived ageMs ago.
  const at = { ...obj, t: stored } as CachePolicy.CachePolicyObject
  const memo = CachePolicy.fromObject(at)
  const plain = CachePolicy.fromObject(at)
  // One clock for both (Age is rounded to the second: two readings could straddle it).
  const now = Date.now()
  for (const p of [memo, plain]) (p as unknown as { now(): number }).now = () => now
  return { memo, plain }
}

const CASES: { name: string; status: number; headers: Headers; ageMs: number }[] = [
  { name: 'origin Date, max-age', status: 200, headers: { date: new Date(Date.now() - 5000).toUTCString(), 'cache-control': 'public, max-age=60', 'content-type': 'text/plain', etag: '"a"' }, ageMs: 5000 },
  { name: 'no Date from the origin', status: 200, headers: { 'cache-control': 'max-age=600', 'x-a': '1' }, ageMs: 2000 },
  { name: 'hop-by-hop and Connection-named fields', status: 200, headers: { 'cache-control': 'max-age=60', connection: 'x-secret, close', 'x-secret': 'no', 'keep-alive': 'timeout=5', te: 'trailers', 'x-kept': 'yes' }, ageMs: 0 },
  { name: '1xx warnings go, 2xx stay', status: 200, headers: { 'cache-control': 'max-age=60', warning: '110 - "stale", 214 - "transformed"' }, ageMs: 1000 },
  { name: 'a status the library does not know, must-revalidate hidden', status: 299, headers: { 'cache-control': 'max-age=60, must-revalidate', 'set-cookie': 'a=1' }, ageMs: 1000 },
  { name: 'targeted field, Expires', status: 200, headers: { 'cdn-cache-control': 'max-age=300', 'cache-control': 'no-store', expires: 'Thu, 01 Jan 2099 00:00:00 GMT' }, ageMs: 0 },
  { name: 'a bad Date, an old Age', status: 200, headers: { date: 'yesterday', age: '30', 'cache-control': 'max-age=60' }, ageMs: 0 }
]

t.test('client(library()) is forClient(responseHeaders()) for stored responses of every kind', async (t) => {
  for (const c of CASES) {
    const { memo, plain } = policies(c.status, c.headers, c.ageMs)
    const hits = HitHeaders.install(memo)
    t.ok(hits, `${c.name}: memoised`)
    for (let i = 0; i < 2; i++) {
      const lib = memo.responseHeaders() as Headers
      const want = plain.responseHeaders() as Headers
      t.same(lib, want, `${c.name}: the library's view, hit ${i + 1}`)
      t.same(hits?.client(lib), forClient(want), `${c.name}: the client's view, hit ${i + 1}`)
      t.not(memo.responseHeaders(), lib, 'a fresh object each call (callers may change it)')
    }
    // Another object than the last one made: forClient itself.
    const other = { ...(memo.responseHeaders() as Headers), 'x-extra': '1' }
    t.same(hits?.client(other), forClient(other), `${c.name}: any other object goes through forClient`)
    // evaluateRequest (which calls responseHeaders inside) answers as before.
    const req = { url: '/a', method: 'GET', headers: { host: 'example.test' } }
    t.same(memo.evaluateRequest(req), plain.evaluateRequest(req), `${c.name}: evaluateRequest unchanged`)
  }
})

t.test('past a day of age (heuristic freshness may add a 113 warning) the library answers', async (t) => {
  const lm = new Date(Date.now() - 400 * 24 * 3600 * 1000).toUTCString()
  const { memo, plain } = policies(200, { 'last-modified': lm }, 2 * 24 * 3600 * 1000)
  t.equal(HitHeaders.install(memo), undefined, 'no memo for a policy already a day old')
  const warned = plain.responseHeaders() as Headers
  t.match(warned.warning, /113/, 'the library warns')
  t.same(memo.responseHeaders(), warned, 'and the policy answers as the library does')
})

t.test('httpDate: toUTCString of the same second, whatever the milliseconds', async (t) => {
  const base = Date.UTC(2026, 11, 3, 13, 4, 28)
  for (const ms of [base, base + 999, base + 1000, base - 1, base + 86_400_000]) {
    t.equal(httpDate(ms), new Date(ms).toUTCString())
  }
})
