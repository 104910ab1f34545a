/**
 * RFC 9111 rules that http-cache-semantics got wrong or left out (src/cache/response-rules.ts),
 * and the cache bugs found with a real origin. Each test names its section; each runs against
 * the memory store and a real Redis.
 */
import t from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, waitFor, type Answer, type TestProxy, HTTP1_ONLY } from '../fixtures/proxy.js'
import { redisText, startRedis, type RedisServer } from '../fixtures/redis.js'
import { sendRaw } from '../fixtures/security.js'

type Route = (req: IncomingMessage, res: ServerResponse) => void
const DAY = 24 * 3600 * 1000

/** An origin with a handler per path and a hit counter per path. */
async function origin(t: { teardown(fn: () => unknown): void }, routes: Record<string, Route>): Promise<{ url: string; hits: (path: string) => number }> {
  const hits = new Map<string, number>()
  const up = await startUpstream('origin', (req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    hits.set(path, (hits.get(path) ?? 0) + 1)
    const h = routes[path]
    if (h === undefined) res.writeHead(404).end()
    else h(req, res)
  })
  t.teardown(() => up.close())
  return { url: up.url, hits: (p) => hits.get(p) ?? 0 }
}

/** Writes raw header lines (repeated names allowed) with a body. */
function raw(res: ServerResponse, status: number, lines: [string, string][], body = 'body'): void {
  const flat: string[] = []
  for (const [k, v] of lines) flat.push(k, v)
  res.writeHead(status, flat)
  res.end(body)
}

for (const storeName of ['memory', 'redis'] as const) {
  t.test(`RFC 9111 over the ${storeName} store`, async (t) => {
    let redis: RedisServer | undefined
    if (storeName === 'redis') {
      redis = await startRedis()
      t.teardown(() => redis?.close())
    }
    const store = storeName === 'redis' ? `{ store: redis, redis: { url: "${redis!.url}", timeout_ms: 200 } }` : '{ store: memory }'
    let lastModifiedSeen: string | undefined
    const staleThenDown = (cc: string, down: 503 | 'drop', body = 'kept'): Route => (_q, res) => {
      if (sieDown && down === 'drop') res.socket?.destroy()
      else if (sieDown) res.writeHead(503).end('down')
      else raw(res, 200, [['Cache-Control', cc], ['Age', '5']], body)
    }
    const o = await origin(t, {
      '/two-lines': (_q, s) => raw(s, 200, [['Cache-Control', 'public'], ['Cache-Control', 'max-age=60']]),
      '/must-revalidate': (_q, s) => raw(s, 200, [['Cache-Control', 'max-age=60, must-revalidate'], ['ETag', '"m1"']]),
      // Stale on arrival (Age beyond max-age), with stale-while-revalidate that must-revalidate overrides.
      '/must-revalidate-stale': (q, s) => {
        if (q.headers['if-none-match'] === '"m2"') { s.writeHead(304, { etag: '"m2"' }).end(); return }
        raw(s, 200, [['Cache-Control', 'max-age=60, must-revalidate, stale-while-revalidate=600'], ['Age', '120'], ['ETag', '"m2"']])
      },
      '/304-no-validator': (q, s) => {
        if (q.headers['if-none-match'] !== undefined) { s.writeHead(304, { 'cache-control': 'max-age=0' }).end(); return }
        raw(s, 200, [['Cache-Control', 'max-age=0'], ['ETag', '"n1"']], 'full body')
      },
      '/set-cookie': (_q, s) => raw(s, 200, [['Cache-Control', 'max-age=60'], ['Set-Cookie', 'a=1']]),
      '/date': (_q, s) => raw(s, 200, [['Cache-Control', 'max-age=600'], ['Date', new Date(Date.now() - 5000).toUTCString()]]),
      '/expires': (q, s) => raw(s, 200, [['Expires', decodeURIComponent(new URL(q.url ?? '/', 'http://x').searchParams.get('e') ?? '')], ['Date', new Date().toUTCString()]]),
      '/case': (_q, s) => raw(s, 200, [['Cache-Control', 'Max-Age=60']]),
      '/case-nostore': (_q, s) => raw(s, 200, [['Cache-Control', 'max-age=60, No-Store']]),
      '/age-float': (_q, s) => raw(s, 200, [['Cache-Control', 'max-age=3600'], ['Age', '7200.0']]),
      '/max-plus': (_q, s) => raw(s, 200, [['Cache-Control', 'max-age=2147483648']]),
      '/far-future': (_q, s) => raw(s, 200, [['Expires', 'Sun, 21 Nov 2286 04:46:39 GMT'], ['Date', new Date().toUTCString()]]),
      '/age-int': (_q, s) => raw(s, 200, [['Cache-Control', 'max-age=3600'], ['Age', '7200']]),
      '/age-list-old': (_q, s) => raw(s, 200, [['Cache-Control', 'max-age=3600'], ['Age', '7200, 0']]),
      '/age-list-new': (_q, s) => raw(s, 200, [['Cache-Control', 'max-age=3600'], ['Age', '0, 7200']]),
      '/age-two-lines': (_q, s) => raw(s, 200, [['Cache-Control', 'max-age=3600'], ['Age', '7200'], ['Age', '0']]),
      '/status-500': (_q, s) => raw(s, 500, [['Cache-Control', 'max-age=60']], 'error page'),
      '/status-410': (_q, s) => raw(s, 410, [['Cache-Control', 'max-age=60']], 'gone'),
      '/heuristic-500': (_q, s) => raw(s, 500, [['Last-Modified', new Date(Date.now() - DAY).toUTCString()]], 'error page'),
      '/range': (q, s) => { lastModifiedSeen = q.headers.range as string | undefined; raw(s, 200, [['Cache-Control', 'max-age=60'], ['ETag', '"r1"']], '0123456789') },
      // Stale on arrival (Age beyond max-age); once `sieDown`, the origin fails with a 503 or a dropped connection.
      // No stale-if-error from the origin on the first four: the route's stale_if_error_s (60 s by default) stands in.
      '/sie-default': staleThenDown('max-age=1', 'drop'),
      '/sie-default-503': staleThenDown('max-age=1', 503),
      '/sie-must-revalidate': staleThenDown('max-age=1, must-revalidate', 503),
      '/sie-off/x': staleThenDown('max-age=1', 503),
      '/sie': staleThenDown('max-age=1, stale-if-error=600', 503, 'good'),
      '/cdn': (_q, s) => raw(s, 200, [['Cache-Control', 'no-store'], ['CDN-Cache-Control', 'max-age=60'], ['Expires', 'Thu, 01 Jan 1970 00:00:00 GMT']]),
      '/cdn-string-max-age': (_q, s) => raw(s, 200, [['Cache-Control', 'no-store'], ['CDN-Cache-Control', 'max-age="10000"']]),
      '/cdn-invalid': (_q, s) => raw(s, 200, [['Cache-Control', 'no-store'], ['CDN-Cache-Control', 'max-age=60, =broken']]),
      '/sy-first': (_q, s) => raw(s, 200, [['Switchyard-Cache-Control', 'no-store'], ['CDN-Cache-Control', 'max-age=60']]),
      '/strip/cdn': (_q, s) => raw(s, 200, [['CDN-Cache-Control', 'max-age=60']]),
      '/cors': (q, s) => {
        const origin = q.headers.origin
        raw(s, 200, [['Cache-Control', 'public, max-age=60'], ...(origin === undefined ? [] : [['Access-Control-Allow-Origin', String(origin)] as [string, string]])], `for ${origin ?? 'none'}`)
      }
    })
    let sieDown = false
    const proxy: TestProxy = await startProxy(`
cache: ${store}
pools: { o: { members: [{ url: "${o.url}" }] } }
routes:
  - { name: share, match: { path_prefix: /set-cookie }, pool: o, cache: { enabled: true, share_set_cookie: true } }
  - { name: strip, match: { path_prefix: /strip }, pool: o, cache: { enabled: true, strip_targeted_fields: true } }
  - { name: sie-off, match: { path_prefix: /sie-off }, pool: o, cache: { enabled: true, stale_if_error_s: 0 } }
  - { name: c, match: {}, pool: o, cache: { enabled: true } }
`)
    t.teardown(() => proxy.close())
    const get = (path: string, headers: Record<string, string> = {}): Promise<Answer> => fetchText(`${proxy.url}${path}`, { headers })

    await t.test('RFC 9110 section 5.3: a field on two lines is one list; the answer is relayed and stored', async (t) => {
      const a = await get('/two-lines')
      t.equal(a.status, 200)
      t.equal(a.body, 'body')
      t.equal((await get('/two-lines')).headers['x-cache'], 'HIT')
      t.equal(o.hits('/two-lines'), 1)
    })

    await t.test('RFC 9111 section 5.2.2.2: must-revalidate binds once stale, not while fresh', async (t) => {
      t.equal((await get('/must-revalidate')).headers['x-cache'], 'MISS')
      t.equal((await get('/must-revalidate')).headers['x-cache'], 'HIT', 'fresh: served without asking the origin')
      t.equal(o.hits('/must-revalidate'), 1)
      await get('/must-revalidate-stale')
      const stale = await get('/must-revalidate-stale')
      t.equal(stale.headers['x-cache'], 'REVALIDATED', 'stale: revalidated before use, stale-while-revalidate notwithstanding')
      t.equal(o.hits('/must-revalidate-stale'), 2)
    })

    await t.test('RFC 9111 sections 4.3.3-4.3.4: a 304 without validators costs no second origin request', async (t) => {
      t.equal((await get('/304-no-validator')).body, 'full body')
      const again = await get('/304-no-validator')
      t.equal(again.status, 200)
      t.equal(again.body, 'full body', 'the stored body, selected by the 304')
      t.equal(again.headers['x-cache'], 'REVALIDATED')
      t.equal(o.hits('/304-no-validator'), 2, 'one origin request per client request')
    })

    await t.test('share_set_cookie: true stores and shares a response with Set-Cookie (RFC 9111 section 7.3)', async (t) => {
      await get('/set-cookie')
      const hit = await get('/set-cookie')
      t.equal(hit.headers['x-cache'], 'HIT')
      t.match(String(hit.headers['set-cookie']), /^a=1$/, 'with its Set-Cookie')
      t.equal(o.hits('/set-cookie'), 1)
    })

    await t.test('RFC 9111 section 5.1: a hit keeps the origin\'s Date; Age tells how long it was held', async (t) => {
      const first = await get('/date')
      const hit = await get('/date')
      t.equal(hit.headers['x-cache'], 'HIT')
      t.equal(hit.headers.date, first.headers.date, 'Date as the origin sent it')
      t.ok(Number(hit.headers.age) >= 5, `Age counts from the origin's Date (${hit.headers.age})`)
    })

    await t.test('RFC 9110 section 5.6.7 / RFC 9111 section 5.3: only real HTTP-dates are Expires dates', async (t) => {
      const future = new Date(Date.now() + DAY)
      const imf = future.toUTCString()
      const bad = [
        imf.replace('GMT', 'UTC'),
        imf.replace(',', ''),
        imf.replace(' ', '  '),
        imf.replace(/ (\d{2}) (\w{3}) (\d{4})/, ' $1-$2-$3'),
        new Date(Date.UTC(2099, 10, 6, 8, 49, 37)).toUTCString().replace(' 08:', ' 8:'),
        'tomorrow'
      ]
      let i = 0
      for (const e of bad) {
        const path = `/expires?e=${encodeURIComponent(e)}&n=${i++}`
        await get(path)
        t.not((await get(path)).headers['x-cache'], 'HIT', `Expires: ${e} is not a date: already expired`)
      }
      const days = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday']
      const mon = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
      const p2 = (n: number): string => String(n).padStart(2, '0')
      const time = `${p2(future.getUTCHours())}:${p2(future.getUTCMinutes())}:${p2(future.getUTCSeconds())}`
      const rfc850 = `${days[future.getUTCDay()]}, ${p2(future.getUTCDate())}-${mon[future.getUTCMonth()]}-${String(future.getUTCFullYear()).slice(2)} ${time} GMT`
      const asctime = `${days[future.getUTCDay()].slice(0, 3)} ${mon[future.getUTCMonth()]} ${String(future.getUTCDate()).padStart(2, ' ')} ${time} ${future.getUTCFullYear()}`
      for (const e of [imf, rfc850, asctime]) {
        const path = `/expires?e=${encodeURIComponent(e)}&n=${i++}`
        await get(path)
        t.equal((await get(path)).headers['x-cache'], 'HIT', `Expires: ${e} is a date`)
      }
    })

    await t.test('RFC 9111 section 5.2: directive names are case-insensitive; section 5.1: Age is delta-seconds', async (t) => {
      await get('/case')
      t.equal((await get('/case')).headers['x-cache'], 'HIT', 'Max-Age=60')
      await get('/case-nostore')
      t.not((await get('/case-nostore')).headers['x-cache'], 'HIT', 'No-Store')
      await get('/age-float')
      t.equal((await get('/age-float')).headers['x-cache'], 'HIT', 'Age: 7200.0 is not delta-seconds: ignored')
      await get('/age-int')
      t.not((await get('/age-int')).headers['x-cache'], 'HIT', 'Age: 7200 beyond max-age=3600: stale')
      // "a cache encountering a message with a list-based Age field value SHOULD use the first member"
      await get('/age-list-old')
      t.not((await get('/age-list-old')).headers['x-cache'], 'HIT', 'Age: 7200, 0 is 7200: stale')
      await get('/age-two-lines')
      t.not((await get('/age-two-lines')).headers['x-cache'], 'HIT', 'Age on two lines, 7200 first: stale')
      await get('/age-list-new')
      t.equal((await get('/age-list-new')).headers['x-cache'], 'HIT', 'Age: 0, 7200 is 0: fresh')
    })

    await t.test('RFC 9111 section 1.2.2: freshness beyond 2^31 seconds or an Expires in 2286 is stored like any other', async (t) => {
      await get('/max-plus')
      t.equal((await get('/max-plus')).headers['x-cache'], 'HIT', 'max-age=2147483648')
      await get('/far-future')
      t.equal((await get('/far-future')).headers['x-cache'], 'HIT', 'Expires: Sun, 21 Nov 2286')
    })

    await t.test('RFC 9111 section 3: other final statuses with explicit freshness are stored; heuristics only for 15.1 statuses', async (t) => {
      await get('/status-500')
      const hit = await get('/status-500')
      t.equal(hit.status, 500)
      t.equal(hit.body, 'error page')
      t.equal(hit.headers['x-cache'], 'HIT')
      await get('/status-410')
      t.equal((await get('/status-410')).headers['x-cache'], 'HIT')
      await get('/heuristic-500')
      t.not((await get('/heuristic-500')).headers['x-cache'], 'HIT', 'a 500 with only Last-Modified gets no heuristic freshness')
    })

    await t.test('RFC 9110 section 14: single ranges of a stored response are served as 206', async (t) => {
      const miss = await get('/range', { range: 'bytes=2-4' })
      t.equal(o.hits('/range'), 1)
      t.equal(lastModifiedSeen, 'bytes=2-4', 'a range miss goes to the origin as sent')
      t.equal(miss.headers['x-cache'], 'MISS')
      await get('/range')
      const part = await get('/range', { range: 'bytes=2-4' })
      t.equal(part.status, 206)
      t.equal(part.body, '234')
      t.equal(part.headers['content-range'], 'bytes 2-4/10')
      t.equal(part.headers['x-cache'], 'HIT')
      t.equal((await get('/range', { range: 'bytes=-3' })).body, '789', 'suffix range')
      t.equal((await get('/range', { range: 'bytes=7-' })).body, '789', 'open range')
      const none = await get('/range', { range: 'bytes=20-30' })
      t.equal(none.status, 416)
      t.equal(none.headers['content-range'], 'bytes */10')
      const multi = await get('/range', { range: 'bytes=0-1,4-5' })
      t.equal(multi.status, 200, 'several ranges: the whole representation')
      t.equal(multi.body, '0123456789')
      const stale = await get('/range', { range: 'bytes=0-1', 'if-range': '"other"' })
      t.equal(stale.status, 200, 'If-Range that does not match: the whole representation')
      t.equal(o.hits('/range'), 2)
    })

    await t.test('RFC 5861 section 4: stale-if-error covers an origin 503', async (t) => {
      await get('/sie')
      sieDown = true
      const a = await get('/sie')
      sieDown = false
      t.equal(a.status, 200)
      t.equal(a.body, 'good')
      t.equal(a.headers['x-cache'], 'STALE')
    })

    await t.test('RFC 9111 section 4.2.4: stale_if_error_s is the configured permission to serve stale when the origin fails', async (t) => {
      for (const path of ['/sie-default', '/sie-default-503', '/sie-must-revalidate', '/sie-off/x']) await get(path)
      sieDown = true
      try {
        const dropped = await get('/sie-default')
        t.equal(dropped.status, 200, 'the origin dropped the connection: the stale entry answers')
        t.equal(dropped.body, 'kept')
        t.equal(dropped.headers['x-cache'], 'STALE')
        t.equal(dropped.headers['cache-control'], 'max-age=1', 'the client sees the origin\'s own Cache-Control')
        const e503 = await get('/sie-default-503')
        t.equal(e503.headers['x-cache'], 'STALE', 'a 503: the stale entry answers')
        t.equal((await get('/sie-must-revalidate')).status, 503, 'must-revalidate: never stale (RFC 9111 section 5.2.2.2)')
        t.equal((await get('/sie-off/x')).status, 503, 'stale_if_error_s: 0 turns it off')
      } finally {
        sieDown = false
      }
    })

    await t.test('RFC 9213 section 2.1: the first valid targeted field decides over Cache-Control and Expires', async (t) => {
      const first = await get('/cdn')
      t.equal(first.headers['cache-control'], 'no-store', 'the client still sees Cache-Control as sent')
      t.equal(first.headers['cdn-cache-control'], 'max-age=60', 'and the targeted field (strip_targeted_fields is off)')
      t.equal((await get('/cdn')).headers['x-cache'], 'HIT', 'CDN-Cache-Control: max-age=60 wins over no-store and a past Expires')
      await get('/cdn-invalid')
      t.not((await get('/cdn-invalid')).headers['x-cache'], 'HIT', 'an invalid dictionary is ignored: Cache-Control: no-store applies')
      await get('/cdn-string-max-age')
      t.not((await get('/cdn-string-max-age')).headers['x-cache'], 'HIT', 'max-age="10000" (a string, not an integer) gives no freshness')
      await get('/sy-first')
      t.not((await get('/sy-first')).headers['x-cache'], 'HIT', 'Switchyard-Cache-Control comes first in the target list')
      await get('/strip/cdn')
      const stripped = await get('/strip/cdn')
      t.equal(stripped.headers['x-cache'], 'HIT')
      t.equal(stripped.headers['cdn-cache-control'], undefined, 'strip_targeted_fields removes it from answers')
      t.equal((await get('/strip/cdn')).headers['cdn-cache-control'], undefined)
    })

    await t.test('an Origin never shares an entry with another Origin or none, whatever Vary says', async (t) => {
      t.equal((await get('/cors', { origin: 'https://a.test' })).body, 'for https://a.test')
      const b = await get('/cors', { origin: 'https://b.test' })
      t.equal(b.body, 'for https://b.test')
      t.equal(b.headers['access-control-allow-origin'], 'https://b.test')
      t.equal((await get('/cors')).body, 'for none')
      const again = await get('/cors', { origin: 'https://a.test' })
      t.equal(again.headers['x-cache'], 'HIT')
      t.equal(again.body, 'for https://a.test')
      t.equal(o.hits('/cors'), 3)
    })
  })
}

// A proxy forwards 1xx answers it did not ask for (RFC 9110 section 15.2); they are never stored.
const INTERIM: [string, string, (res: ServerResponse) => void, RegExp][] = [
  ['RFC 8297: a 103 Early Hints is relayed before the answer, and not stored', '103',
    (res) => res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' }),
    /^HTTP\/1\.1 103 Early Hints\r\nLink: <\/style\.css>; rel=preload; as=style\r\n\r\nHTTP\/1\.1 200 OK\r\n/],
  ['RFC 9110 section 15.2: a 102 Processing is forwarded (a proxy MUST forward 1xx it did not ask for), never stored', '102',
    (res) => res.writeProcessing(),
    /^HTTP\/1\.1 102 Processing\r\n\r\nHTTP\/1\.1 200 OK\r\n/]
]
for (const [name, code, interim, relayed] of INTERIM) {
  t.test(name, HTTP1_ONLY, async (t) => {
    const up = await startUpstream('interim', (_req, res) => {
      interim(res)
      setTimeout(() => res.writeHead(200, { 'cache-control': 'max-age=60' }).end('page'), 20)
    })
    const proxy = await startProxy(`
pools: { o: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: c, match: { path_prefix: /c }, pool: o, cache: { enabled: true } }
  - { name: p, match: {}, pool: o }
`)
    t.teardown(async () => { await proxy.close(); await up.close() })
    for (const path of ['/p', '/c']) {
      const r = await sendRaw(proxy.url, `GET ${path} HTTP/1.1\r\nHost: a.test\r\n\r\n`, { idleMs: 500 })
      t.match(r.text, relayed, `${path}: the ${code} comes first, then the answer`)
    }
    const hit = await sendRaw(proxy.url, 'GET /c HTTP/1.1\r\nHost: a.test\r\n\r\n', { idleMs: 500 })
    t.match(hit.text, /^HTTP\/1\.1 200 OK/, `a hit has no ${code}: it is never stored`)
    const old = await sendRaw(proxy.url, 'GET /p HTTP/1.0\r\nHost: a.test\r\n\r\n', { idleMs: 500 })
    t.match(old.text, /^HTTP\/1\.1 200 OK/, 'never a 1xx to an HTTP/1.0 client (RFC 9110 section 15.2)')
  })
}

t.test('Redis down: no "stored" claim; collapsed requests are counted as collapsed, not hits', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.close())
  let release: () => void = () => {}
  const gate = new Promise<void>((r) => { release = r })
  const up = await startUpstream('o', (req, res) => {
    const send = (): void => { res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '2' }).end('ok') }
    if (req.url === '/slow') void gate.then(send)
    else send()
  })
  const proxy = await startProxy(`
cache: { store: redis, redis: { url: "${redis.url}", timeout_ms: 200 } }
pools: { o: { members: [{ url: "${up.url}" }] } }
routes: [{ name: c, match: {}, pool: o, cache: { enabled: true } }]
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  t.match((await fetchText(`${proxy.url}/up`)).headers['cache-status'], /; stored$/, 'Redis up: stored')
  // A miss's lookup is an LRANGE then an HGET of the URL index (redis-store.ts). A request whose
  // lookup is still under way when the first answer is known is served that answer as a plain hit,
  // so the origin is released only once Redis has answered all three lookups.
  await waitFor(async () => (await redisText(redis.port, ['KEYS', '*v:*'])) === '*1', 5000, 'the /up entry is written')
  const hgets = async (): Promise<number> => Number(/cmdstat_hget:calls=(\d+)/.exec(await redisText(redis.port, ['INFO', 'commandstats']))?.[1] ?? 0)
  const before = await hgets()
  const waiting = [1, 2, 3].map(() => fetchText(`${proxy.url}/slow`))
  await waitFor(async () => /switchyard_requests_in_flight\{route="c"\} 3/.test((await fetchText(`${proxy.adminUrl}/metrics`)).body), 5000, 'three requests in flight')
  await waitFor(async () => (await hgets()) >= before + 3, 5000, 'three lookups answered by Redis')
  release()
  const answers = await Promise.all(waiting)
  t.same(answers.map((a) => a.body), ['ok', 'ok', 'ok'])
  const statuses = answers.map((a) => a.headers['cache-status'])
  t.equal(statuses.filter((s) => String(s).includes('collapsed')).length, 2, `two were collapsed into the first (${statuses.join(' | ')})`)
  const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
  t.match(metrics, /switchyard_cache_lookups_total\{route="c",result="collapsed"\} 2/)
  await redis.stop()
  const down = await fetchText(`${proxy.url}/down`)
  t.equal(down.status, 200, 'served from the origin')
  t.notMatch(String(down.headers['cache-status']), /stored/, 'and not claimed as stored')
})
