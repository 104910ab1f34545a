/** The pure parsers behind the cache's own RFC rules. */
import t from 'tap'
import { canonicalCacheControl, parseHttpDate, parseSfDictionary, forLibrary, forClient, mustRevalidate } from '../../src/cache/response-rules.js'

t.test('HTTP-date: the three formats of RFC 9110 section 5.6.7 and nothing else', async (t) => {
  const when = Date.UTC(1994, 10, 6, 8, 49, 37)
  t.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT'), when, 'IMF-fixdate')
  t.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT', Date.UTC(2026, 0, 1)), when, 'rfc850, two-digit year in the past century')
  t.equal(parseHttpDate('Sun Nov  6 08:49:37 1994'), when, 'asctime')
  t.equal(parseHttpDate('sun, 06 nov 1994 08:49:37 gmt'), when, 'case-insensitive (RFC 9111 section 4.2)')
  t.equal(parseHttpDate('SUNDAY, 06-NOV-94 08:49:37 GMT', Date.UTC(2026, 0, 1)), when, 'rfc850, case-insensitive')
  t.equal(parseHttpDate('Mon, 06 Nov 1994 08:49:37 GMT'), when, 'a day name that disagrees with the date is not checked')
  for (const bad of ['Sun, 06 Nov 1994 08:49:37 UTC', 'Sun 06 Nov 1994 08:49:37 GMT', 'Sun,  06 Nov 1994 08:49:37 GMT',
    'Sun, 06-Nov-1994 08:49:37 GMT', 'Sun, 06 Nov 1994 8:49:37 GMT', 'Sun, 31 Feb 1994 08:49:37 GMT', 'Sux, 06 Nov 1994 08:49:37 GMT',
    'Sun, 06 Nov 1994 08:49:37 AEST', '0', '', '1994-11-06T08:49:37Z']) {
    t.ok(Number.isNaN(parseHttpDate(bad)), `not a date: ${JSON.stringify(bad)}`)
  }
})

t.test('Cache-Control: names lower-cased, invalid or conflicting freshness is stale, revalidation hidden from the library', async (t) => {
  t.equal(canonicalCacheControl('Max-Age=60, Public', true), 'max-age=60, public')
  t.equal(canonicalCacheControl('max-age=60, max-age=120', true), 'max-age=0')
  t.equal(canonicalCacheControl('max-age=60, max-age=60', true), 'max-age=60', 'the same value twice is not a conflict')
  t.equal(canonicalCacheControl('max-age=1.5', true), 'max-age=0')
  t.equal(canonicalCacheControl('max-age="60"', true), 'max-age=60', 'a quoted delta is accepted (RFC 9111 section 5.2: recipients should accept both forms)')
  t.equal(canonicalCacheControl('no-cache="set-cookie, x-a", max-age=5', true), 'no-cache="set-cookie, x-a", max-age=5', 'commas inside a quoted value')
  const h = canonicalCacheControl('max-age=5, Must-Revalidate', true)
  t.notMatch(h, /(^|, )must-revalidate/)
  t.ok(mustRevalidate({ 'cache-control': h }))
  t.ok(mustRevalidate({ 'cache-control': 's-maxage=5' }), 's-maxage implies proxy-revalidate (RFC 9111 section 5.2.2.10)')
  t.notOk(mustRevalidate({ 'cache-control': 'max-age=5' }))
})

t.test('Structured Fields dictionaries (RFC 8941) for targeted fields (RFC 9213)', async (t) => {
  t.same(parseSfDictionary('max-age=60, no-store'), [{ name: 'max-age', value: '60' }, { name: 'no-store', value: undefined }])
  t.same(parseSfDictionary('max-age=60;a=1, private=?0, public=?1'), [{ name: 'max-age', value: '60' }, { name: 'public', value: undefined }], 'parameters ignored, false dropped')
  t.same(parseSfDictionary('max-age=10, max-age=20'), [{ name: 'max-age', value: '20' }], 'the last of a repeated key wins')
  t.same(parseSfDictionary('no-cache="a, b"'), [{ name: 'no-cache', value: 'a, b' }])
  t.same(parseSfDictionary('max-age="10000", s-maxage=1.5, public'), [{ name: 'public', value: undefined }], 'freshness directives of another type than integer are ignored (RFC 9213 section 2.1)')
  t.same(parseSfDictionary('max-age, stale-if-error=?1, no-store'), [{ name: 'no-store', value: undefined }], 'a bare (boolean) freshness directive is ignored too')
  for (const bad of ['Max-Age=60', 'max-age=60,', '=1', 'max-age=6 0', 'a="open']) t.equal(parseSfDictionary(bad), undefined, `invalid: ${bad}`)
})

t.test('forLibrary / forClient: the client gets the origin\'s fields back', async (t) => {
  const now = Date.UTC(2026, 0, 1, 0, 0, 10)
  const received = {
    'cache-control': ['Public', 'Max-Age=60, must-revalidate'],
    expires: 'tomorrow',
    date: 'Thu, 01 Jan 2026 00:00:00 GMT',
    age: '3.0',
    'cdn-cache-control': 'max-age=600'
  }
  const plain = forLibrary(200, received, { shareSetCookie: false, targeted: [] }, now)
  t.match(plain.headers, { 'cache-control': /^public, max-age=60, x-switchyard-must-revalidate$/, expires: '0', age: '10' })
  const targeted = forLibrary(200, received, { shareSetCookie: false, targeted: ['cdn-cache-control'] }, now)
  t.equal(targeted.headers['cache-control'], 'max-age=600')
  t.equal(targeted.headers.expires, undefined, 'Expires is ignored under a targeted field')
  const back = forClient(targeted.headers)
  t.equal(back['cache-control'], 'Public, Max-Age=60, must-revalidate')
  t.equal(back.expires, 'tomorrow')
  t.equal(back.date, received.date)
  t.notOk(Object.keys(back).some((k) => k.includes(' ')), 'no side field leaks')
  const s500 = forLibrary(500, { 'cache-control': 'max-age=60' }, { shareSetCookie: false, targeted: [] }, now)
  t.equal(s500.status, 200, 'the library is given 200 for a final status it does not know, with explicit freshness')
  const h500 = forLibrary(500, {}, { shareSetCookie: false, targeted: [] }, now)
  t.equal(h500.status, 500, 'without explicit freshness it keeps its status (and stays unstored)')
})
