/**
 * Rate limit rules through real proxies: a local limit per client address (429 with Retry-After,
 * RateLimit-Policy and RateLimit per draft-ietf-httpapi-ratelimit-headers-10), per API key
 * header, the burst allowance, a global limit across routes; then a limit shared by TWO proxy
 * instances on a real Redis (requests split across both count against one bucket), and Redis
 * stopped: requests pass (fail open), counted, and limited again once Redis is back.
 */
import t from 'tap'
import { fetchText, startProxy, waitFor, type TestProxy } from '../fixtures/proxy.js'
import { startRedis } from '../fixtures/redis.js'
import { startUpstream } from '../fixtures/upstream.js'
import { metricValue } from '../integration/websocket-fixtures.js'

t.test('local rate limits', async (t) => {
  const up = await startUpstream('web')
  t.teardown(() => up.close())
  const proxy = await startProxy(`
listen: { host: 127.0.0.1, port: 0 }
trusted_proxies: [127.0.0.1/32]
access:
  - name: everyone
    rate_limit: { requests: 8, per: hour }
pools:
  web: { members: [{ url: ${up.url} }] }
routes:
  - name: per-client
    match: { path_prefix: /client }
    pool: web
    access:
      - name: three-a-minute
        rate_limit: { requests: 3, per: minute }
  - name: per-key
    match: { path_prefix: /key }
    pool: web
    access:
      - name: api-key
        rate_limit: { requests: 2, per: minute, key_header: x-api-key }
  - name: bursty
    match: { path_prefix: /burst }
    pool: web
    access:
      - name: with-burst
        rate_limit: { requests: 2, per: minute, burst: 2 }
`)
  t.teardown(() => proxy.close())
  const reg = proxy.app.registry
  const get = async (path: string, headers: Record<string, string>): Promise<{ status: number; reached: boolean; headers: Record<string, string | string[] | undefined>; body: string }> => {
    const before = up.hits
    const res = await fetchText(`${proxy.url}${path}`, { headers })
    return { status: res.status, reached: up.hits > before, headers: res.headers, body: res.body }
  }

  t.test('per client address: 429 with Retry-After and the RateLimit fields', async (t) => {
    const a = { 'x-forwarded-for': '198.51.100.1' }
    for (let i = 0; i < 3; i++) t.match(await get('/client', a), { status: 200, reached: true })
    const over = await get('/client', a)
    t.match(over, { status: 429, reached: false })
    const retry = Number(over.headers['retry-after'])
    t.ok(retry >= 1 && retry <= 60, `Retry-After ${retry} within the minute window`)
    t.equal(over.headers['ratelimit-policy'], '"three-a-minute";q=3;w=60')
    t.equal(over.headers.ratelimit, `"three-a-minute";r=0;t=${retry}`)
    t.equal(over.body, `429 Too Many Requests: rate limit three-a-minute exceeded, retry in ${retry} s\n`)
    // Another client has its own bucket.
    t.match(await get('/client', { 'x-forwarded-for': '198.51.100.2' }), { status: 200, reached: true })
    t.equal(await metricValue(reg, 'switchyard_rate_limited_total', { route: 'per-client', rule: 'three-a-minute' }), 1)
  })

  t.test('per API key header; requests without it count per address', async (t) => {
    const ip = { 'x-forwarded-for': '198.51.100.10' }
    t.equal((await get('/key', { ...ip, 'x-api-key': 'k1' })).status, 200)
    t.equal((await get('/key', { ...ip, 'x-api-key': 'k1' })).status, 200)
    t.equal((await get('/key', { ...ip, 'x-api-key': 'k1' })).status, 429)
    t.equal((await get('/key', { ...ip, 'x-api-key': 'k2' })).status, 200, 'same address, another key: another bucket')
    t.equal((await get('/key', ip)).status, 200)
    t.equal((await get('/key', ip)).status, 200)
    t.equal((await get('/key', ip)).status, 429)
  })

  t.test('burst: requests beyond the rate up to the burst', async (t) => {
    const ip = { 'x-forwarded-for': '198.51.100.20' }
    const got: number[] = []
    for (let i = 0; i < 5; i++) got.push((await get('/burst', ip)).status)
    t.same(got, [200, 200, 200, 200, 429])
  })

  t.test('a global limit is one bucket per client across every route', async (t) => {
    const ip = { 'x-forwarded-for': '198.51.100.30' }
    const got: number[] = []
    for (const path of ['/client', '/client', '/key', '/key', '/burst', '/burst', '/burst', '/burst', '/client']) got.push((await get(path, ip)).status)
    t.same(got, [200, 200, 200, 200, 200, 200, 200, 200, 429])
    t.equal(await metricValue(reg, 'switchyard_rate_limited_total', { route: 'per-client', rule: 'everyone' }), 1)
  })
})

t.test('a limit shared by two instances on Redis; Redis down fails open', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.close())
  const up = await startUpstream('web')
  t.teardown(() => up.close())
  const yaml = `
listen: { host: 127.0.0.1, port: 0 }
trusted_proxies: [127.0.0.1/32]
firewall: { redis: { url: ${redis.url}, timeout_ms: 200 }, error_log_interval_ms: 60000 }
pools:
  web: { members: [{ url: ${up.url} }] }
routes:
  - name: api
    match: { path_prefix: / }
    pool: web
    access:
      - name: shared
        rate_limit: { requests: 4, per: minute, store: redis }
`
  const a = await startProxy(yaml)
  t.teardown(() => a.close())
  const b = await startProxy(yaml)
  t.teardown(() => b.close())
  const get = async (p: TestProxy, ip: string): Promise<number> => (await fetchText(`${p.url}/x`, { headers: { 'x-forwarded-for': ip } })).status

  t.test('requests split across both instances count against one bucket', async (t) => {
    const ip = '203.0.113.1'
    const before = up.hits
    t.same([await get(a, ip), await get(b, ip), await get(a, ip), await get(b, ip)], [200, 200, 200, 200])
    t.equal(await get(a, ip), 429)
    t.equal(await get(b, ip), 429)
    t.equal(up.hits - before, 4, 'four requests reached the upstream, not eight')
    const limited = await metricValue(a.app.registry, 'switchyard_rate_limited_total', { route: 'api', rule: 'shared' }) +
      await metricValue(b.app.registry, 'switchyard_rate_limited_total', { route: 'api', rule: 'shared' })
    t.equal(limited, 2)
  })

  t.test('Redis stopped: requests pass, counted; limited again once it is back', async (t) => {
    const ip = '203.0.113.2'
    await redis.stop()
    const before = up.hits
    const got: number[] = []
    for (let i = 0; i < 6; i++) got.push(await get(a, ip))
    t.same(got, [200, 200, 200, 200, 200, 200], 'fail open: more than the limit went through')
    t.equal(up.hits - before, 6)
    t.equal(await metricValue(a.app.registry, 'switchyard_rate_limit_errors_total', { route: 'api', rule: 'shared' }), 6)
    t.equal(await metricValue(a.app.registry, 'switchyard_rate_limited_total', { route: 'api', rule: 'shared' }) +
      await metricValue(b.app.registry, 'switchyard_rate_limited_total', { route: 'api', rule: 'shared' }), 2, 'nothing limited while Redis was away')

    await redis.start()
    // ioredis reconnects on its own (capped backoff): poll until the limit counts again.
    const ip2 = '203.0.113.3'
    await waitFor(async () => (await get(a, ip2)) === 429, 15000, 'the shared limit to apply again after Redis restarted')
    // Each instance's client reconnects on its own backoff: until b's has, b fails open (200).
    await waitFor(async () => (await get(b, ip2)) === 429, 15000, 'and on the other instance too, once its client reconnected')
    t.pass('limited again on both instances')
  })
})
