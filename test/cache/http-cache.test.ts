import t from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { startUpstream, type Upstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, waitFor, type TestProxy } from '../fixtures/proxy.js'
import { startRedis, type RedisServer } from '../fixtures/redis.js'

type Route = (req: IncomingMessage, res: ServerResponse, up: Upstream) => void

/** An origin whose behaviour per path is given by `routes`; unknown paths answer 404. */
async function origin(routes: Record<string, Route>): Promise<Upstream> {
  return startUpstream('origin', (req, res, up) => {
    const path = (req.url ?? '/').split('?')[0]
    const r = routes[path]
    if (r === undefined) { res.writeHead(404).end('no'); return }
    r(req, res, up)
  })
}

const hitsFor = (up: Upstream, path: string): number => up.received.filter((r) => r.url.split('?')[0] === path).length

function configFor(up: Upstream, store: string, extra = ''): string {
  return `
cache: ${store}
pools: { web: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: cached, match: { path_prefix: / }, pool: web, cache: { enabled: true, max_entry_bytes: 1000 ${extra} } }
`
}

let counter = 0
const json = (res: ServerResponse, headers: Record<string, string>, status = 200): void => {
  counter++
  const body = `body-${counter}`
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': String(body.length), ...headers })
  res.end(body)
}

for (const storeName of ['memory', 'redis'] as const) {
  t.test(`HTTP caching semantics, ${storeName} store`, async (t) => {
    let redis: RedisServer | undefined
    if (storeName === 'redis') {
      redis = await startRedis()
      t.teardown(() => redis?.close())
    }
    const store = storeName === 'redis' ? `{ store: redis, redis: { url: "${redis!.url}", timeout_ms: 200 } }` : '{ store: memory }'
    let etagVersion = 1
    const up = await origin({
      '/fresh': (_q, s) => json(s, { 'cache-control': 'public, max-age=60' }),
      '/aged': (_q, s) => json(s, { 'cache-control': 'max-age=60', age: '10' }),
      '/smaxage': (_q, s) => json(s, { 'cache-control': 'max-age=0, s-maxage=60' }),
      '/expires': (_q, s) => json(s, { expires: new Date(Date.now() + 60000).toUTCString(), date: new Date().toUTCString() }),
      '/nostore': (_q, s) => json(s, { 'cache-control': 'no-store' }),
      '/private': (_q, s) => json(s, { 'cache-control': 'private, max-age=60' }),
      '/nocache': (q, s) => {
        if (q.headers['if-none-match'] === '"v1"') { counter++; s.writeHead(304, { etag: '"v1"' }).end(); return }
        json(s, { 'cache-control': 'no-cache', etag: '"v1"' })
      },
      '/reval': (q, s) => {
        const tag = `"r${etagVersion}"`
        if (q.headers['if-none-match'] === tag) { s.writeHead(304, { etag: tag, 'cache-control': 'max-age=0' }).end(); return }
        json(s, { 'cache-control': 'max-age=0', etag: tag })
      },
      '/auth': (_q, s) => json(s, { 'cache-control': 'max-age=60' }),
      '/auth-public': (_q, s) => json(s, { 'cache-control': 'public, max-age=60' }),
      '/cookie': (_q, s) => json(s, { 'cache-control': 'public, max-age=60', 'set-cookie': 'session=secret' }),
      '/vary': (q, s) => json(s, { 'cache-control': 'public, max-age=60', vary: 'Accept-Encoding', 'x-enc': String(q.headers['accept-encoding']) }),
      '/varystar': (_q, s) => json(s, { 'cache-control': 'public, max-age=60', vary: '*' }),
      '/big': (_q, s) => { s.writeHead(200, { 'cache-control': 'public, max-age=60' }); s.end('x'.repeat(5000)) },
      '/swr': (_q, s) => json(s, { 'cache-control': 'max-age=0, stale-while-revalidate=60' }),
      '/sie': (_q, s) => json(s, { 'cache-control': 'max-age=0, stale-if-error=60', etag: '"sie"' }),
      '/slow': (_q, s) => { setTimeout(() => json(s, { 'cache-control': 'public, max-age=60' }), 200) },
      '/item': (q, s) => (q.method === 'GET' ? json(s, { 'cache-control': 'public, max-age=60' }) : (q.resume(), json(s, { location: '/item-list' }, 201))),
      '/item-list': (_q, s) => json(s, { 'cache-control': 'public, max-age=60' }),
      '/host': (q, s) => json(s, { 'cache-control': 'public, max-age=60', 'x-seen-host': String(q.headers['x-forwarded-host']) }),
      '/plain': (_q, s) => json(s, {})
    })
    const proxy: TestProxy = await startProxy(configFor(up, store))
    t.teardown(async () => { await proxy.close(); await up.close() })
    const get = (path: string, headers: Record<string, string> = {}) => fetchText(`${proxy.url}${path}`, { headers })

    await t.test('fresh response: MISS then HIT, counted at the origin, Age and Cache-Status', async (t) => {
      const a = await get('/fresh')
      const b = await get('/fresh')
      t.equal(a.headers['x-cache'], 'MISS')
      t.match(a.headers['cache-status'], /^switchyard; fwd=miss; stored$/)
      t.equal(b.headers['x-cache'], 'HIT')
      t.equal(b.body, a.body)
      t.equal(hitsFor(up, '/fresh'), 1)
      t.match(b.headers.age, /^\d+$/)
      const aged = await get('/aged')
      const aged2 = await get('/aged')
      t.equal(aged2.headers['x-cache'], 'HIT')
      t.ok(Number(aged2.headers.age) >= 10, `Age ${aged2.headers.age} includes the origin's Age`)
      t.equal(aged.body, aged2.body)
      await get('/smaxage'); t.equal((await get('/smaxage')).headers['x-cache'], 'HIT', 's-maxage wins for a shared cache')
      await get('/expires'); t.equal((await get('/expires')).headers['x-cache'], 'HIT', 'Expires gives freshness')
      await get('/plain'); await get('/plain')
      t.equal(hitsFor(up, '/plain'), 2, 'no freshness information and no default TTL: not reused')
    })

    await t.test('no-store, private, no-cache, Authorization, Set-Cookie, Vary: *', async (t) => {
      for (const p of ['/nostore', '/private', '/cookie', '/varystar']) {
        await get(p); const second = await get(p)
        t.equal(hitsFor(up, p), 2, `${p} is not served from cache`)
        t.not(second.headers['x-cache'], 'HIT')
      }
      const n1 = await get('/nocache'); const n2 = await get('/nocache')
      t.equal(n2.headers['x-cache'], 'REVALIDATED', 'no-cache: revalidated every time')
      t.equal(n2.body, n1.body, 'a 304 serves the stored body')
      t.equal(up.received.filter((r) => r.url === '/nocache').pop()?.headers['if-none-match'], '"v1"', 'the origin saw a conditional request')
      await get('/auth', { authorization: 'Bearer a' }); await get('/auth', { authorization: 'Bearer b' })
      t.equal(hitsFor(up, '/auth'), 2, 'a response to an authorized request is not shared without public/s-maxage/must-revalidate')
      await get('/auth-public', { authorization: 'Bearer a' })
      t.equal((await get('/auth-public', { authorization: 'Bearer b' })).headers['x-cache'], 'HIT', 'public allows sharing')
      const c = await get('/cookie')
      t.match(c.headers['set-cookie'], /session=secret/, 'the client that caused it gets its cookie')
    })

    await t.test('Vary: one stored variant per Accept-Encoding', async (t) => {
      const gz = await get('/vary', { 'accept-encoding': 'gzip' })
      const br = await get('/vary', { 'accept-encoding': 'br' })
      const gz2 = await get('/vary', { 'accept-encoding': 'gzip' })
      const br2 = await get('/vary', { 'accept-encoding': 'br' })
      t.equal(hitsFor(up, '/vary'), 2)
      t.equal(gz2.headers['x-enc'], 'gzip')
      t.equal(br2.headers['x-enc'], 'br')
      t.equal(gz2.body, gz.body)
      t.equal(br2.body, br.body)
      t.not(gz.body, br.body)
    })

    await t.test('304 revalidation seen from the origin, client conditionals answered from cache', async (t) => {
      const first = await get('/reval')
      const second = await get('/reval')
      t.equal(second.headers['x-cache'], 'REVALIDATED')
      t.equal(second.body, first.body)
      const seen = up.received.filter((r) => r.url === '/reval')
      t.equal(seen.length, 2)
      t.equal(seen[1].headers['if-none-match'], '"r1"', 'the origin got If-None-Match with the stored ETag')
      etagVersion = 2
      const third = await get('/reval')
      t.not(third.body, first.body, 'a changed resource replaces the entry')
      await get('/fresh')
      const etag = (await get('/fresh')).headers.etag
      t.equal(etag, undefined)
      const nm = await get('/nocache', { 'if-none-match': '"v1"' })
      t.equal(nm.status, 304, 'client If-None-Match matching the stored ETag gets 304')
      t.equal(nm.body, '')
    })

    await t.test('stale-while-revalidate and stale-if-error', async (t) => {
      const s1 = await get('/swr')
      const s2 = await get('/swr')
      t.equal(s2.headers['x-cache'], 'STALE')
      t.equal(s2.body, s1.body)
      await waitFor(() => hitsFor(up, '/swr') === 2, 3000, 'one background refresh')
      await get('/sie')
      const before = hitsFor(up, '/sie')
      up.server.close()
      up.server.closeAllConnections()
      const stale = await get('/sie')
      t.equal(stale.status, 200, 'origin down: the stale entry is served')
      t.equal(stale.headers['x-cache'], 'STALE')
      t.match(stale.headers['cache-status'], /stale-if-error/)
      t.equal(hitsFor(up, '/sie'), before)
      await new Promise<void>((resolve) => up.server.listen(up.port, '127.0.0.1', () => resolve()))
    })

    await t.test('big bodies stream through and are not stored; POST invalidates', async (t) => {
      const b1 = await get('/big')
      t.equal(b1.body.length, 5000)
      t.match(b1.headers['cache-status'], /fwd=miss$/)
      await get('/big')
      t.equal(hitsFor(up, '/big'), 2)
      await get('/item'); await get('/item-list')
      t.equal((await get('/item')).headers['x-cache'], 'HIT')
      const post = await fetchText(`${proxy.url}/item`, { method: 'POST', body: 'new' })
      t.equal(post.status, 201)
      t.not(post.headers['x-cache'], 'HIT', 'POST is never served from cache')
      await waitFor(async () => (await get('/item')).headers['x-cache'] === 'MISS', 2000, 'the URL to be invalidated')
      t.equal((await get('/item-list')).headers['x-cache'], 'MISS', 'its Location was invalidated too')
    })

    await t.test('50 concurrent misses collapse into one origin request', async (t) => {
      const answers = await Promise.all(Array.from({ length: 50 }, () => get('/slow')))
      t.equal(hitsFor(up, '/slow'), 1)
      t.ok(answers.every((a) => a.status === 200 && a.body === answers[0].body))
    })

    await t.test('a poisoned X-Forwarded-Host does not change what others get', async (t) => {
      const evil = await get('/host', { 'x-forwarded-host': 'evil.example' })
      t.equal(evil.headers['x-seen-host'], new URL(proxy.url).host, 'the origin saw our X-Forwarded-Host, not the client\'s')
      const victim = await get('/host')
      t.equal(victim.headers['x-seen-host'], new URL(proxy.url).host)
    })

    await t.test('purge one URL and a prefix on the admin listener', async (t) => {
      await get('/fresh')
      t.equal((await get('/fresh')).headers['x-cache'], 'HIT')
      const host = new URL(proxy.url).host
      const p1 = await fetchText(`${proxy.adminUrl}/admin/cache/purge`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: `http://${host}/fresh` }) })
      t.equal(p1.status, 200, p1.body)
      t.equal((await get('/fresh')).headers['x-cache'], 'MISS')
      const wipe = await fetchText(`${proxy.adminUrl}/admin/cache/purge`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ host, prefix: '/' }) })
      t.equal(wipe.status, 400, 'purging a whole host needs all_paths: true')
      const p2 = await fetchText(`${proxy.adminUrl}/admin/cache/purge`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ host, prefix: '/item' }) })
      t.equal(p2.status, 200, p2.body)
      t.ok(JSON.parse(p2.body).purged >= 1)
      t.equal((await get('/item-list')).headers['x-cache'], 'MISS')
    })

    const metrics = (await fetchText(`${proxy.adminUrl}/metrics`)).body
    t.match(metrics, /switchyard_cache_lookups_total\{route="cached",result="hit"\} \d+/)
    t.match(metrics, /switchyard_cache_lookups_total\{route="cached",result="miss"\} \d+/)
    t.match(metrics, /switchyard_cache_lookups_total\{route="cached",result="revalidated"\} \d+/)
    if (storeName === 'redis') t.match(metrics, /switchyard_cache_store_duration_seconds_count\{store="redis",op="get"\} \d+/)
    else t.match(metrics, /switchyard_cache_bytes \d+/)
  })
}

t.test('Redis stopped mid-test: requests still succeed; restarted: caching resumes', async (t) => {
  const redis = await startRedis()
  const up = await origin({ '/r': (_q, s) => json(s, { 'cache-control': 'public, max-age=60' }) })
  const proxy = await startProxy(configFor(up, `{ store: redis, redis: { url: "${redis.url}", timeout_ms: 100 } }`))
  t.teardown(async () => { await proxy.close(); await up.close(); await redis.close() })
  await fetchText(`${proxy.url}/r`)
  t.equal((await fetchText(`${proxy.url}/r`)).headers['x-cache'], 'HIT')
  await redis.stop()
  for (let i = 0; i < 10; i++) {
    const r = await fetchText(`${proxy.url}/r?i=${i}`)
    t.equal(r.status, 200)
  }
  t.match((await fetchText(`${proxy.adminUrl}/metrics`)).body, /switchyard_cache_store_errors_total\{store="redis",op="get"\} [1-9]/)
  await redis.start()
  await waitFor(async () => {
    await fetchText(`${proxy.url}/r?again=1`)
    return (await fetchText(`${proxy.url}/r?again=1`)).headers['x-cache'] === 'HIT'
  }, 10000, 'caching to resume')
  t.pass('caching resumed after Redis came back')
})

t.test('default_ttl_s caches answers without freshness information; query rules', async (t) => {
  const up = await origin({ '/d': (_q, s) => json(s, {}) })
  const proxy = await startProxy(configFor(up, '{ store: memory }', ', default_ttl_s: 30, query: [page]'))
  t.teardown(async () => { await proxy.close(); await up.close() })
  await fetchText(`${proxy.url}/d?page=1&utm=a`)
  t.equal((await fetchText(`${proxy.url}/d?utm=b&page=1`)).headers['x-cache'], 'HIT', 'only the keyed parameter counts')
  t.equal((await fetchText(`${proxy.url}/d?page=2`)).headers['x-cache'], 'MISS')
})
