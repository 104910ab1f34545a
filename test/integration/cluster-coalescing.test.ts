/**
 * Cluster-wide request coalescing: three Switchyard instances sharing one Redis, 50 concurrent
 * misses for one URL on each, one origin request in all (src/cache/fill-lock.ts).
 */
import t from 'tap'
import { startUpstream, type Upstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, type Answer, type TestProxy } from '../fixtures/proxy.js'
import { startRedis } from '../fixtures/redis.js'
import { startRedisCluster } from '../fixtures/redis-cluster.js'

type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

const INSTANCES = 3
const PER_INSTANCE = 50
/** Long enough that every instance's misses overlap the first origin request. */
const ORIGIN_DELAY_MS = 200

/**
 * Three instances on one Redis, with the coalesce settings given. A generous Redis timeout: on
 * a loaded test machine a timed-out call fails open (an extra origin request, by design).
 */
async function fleet(t: Tap, origin: Upstream, redisUrl: string, coalesce: string): Promise<TestProxy[]> {
  const yaml = `
cache: { store: redis, redis: { url: "${redisUrl}", timeout_ms: 1000 }, coalesce: ${coalesce} }
pools: { web: { members: [{ url: "${origin.url}" }] } }
routes:
  - { name: cached, match: { path_prefix: / }, pool: web, cache: { enabled: true } }
`
  const proxies = await Promise.all(Array.from({ length: INSTANCES }, () => startProxy(yaml)))
  t.teardown(() => Promise.all(proxies.map((p) => p.close())))
  return proxies
}

/**
 * PER_INSTANCE concurrent GETs of `path` at every instance, all at once, for one site (the Host
 * is part of the cache key: behind a load balancer every instance sees the same one).
 */
async function storm(proxies: TestProxy[], path: string): Promise<{ answers: Answer[]; ms: number }> {
  const started = performance.now()
  const get = (p: TestProxy): Promise<Answer> => fetchText(`${p.url}${path}`, { headers: { host: 'www.example.test' } })
  const answers = await Promise.all(proxies.flatMap((p) => Array.from({ length: PER_INSTANCE }, () => get(p))))
  return { answers, ms: performance.now() - started }
}

function tally(answers: Answer[]): string {
  const counts = new Map<string, number>()
  for (const a of answers) {
    const k = `${String(a.headers['x-cache'])} / ${String(a.headers['cache-status'])}`
    counts.set(k, (counts.get(k) ?? 0) + 1)
  }
  return [...counts].map(([k, n]) => `${n} x ${k}`).join('; ')
}

/** The coalesce counter of every instance, summed by result. */
async function coalesced(proxies: TestProxy[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const p of proxies) {
    const text = (await fetchText(`${p.adminUrl}/metrics`)).body
    for (const m of text.matchAll(/^switchyard_cache_coalesce_total\{route="cached",result="(\w+)"\} (\d+)$/gm)) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2])
  }
  return out
}

t.test('cluster-wide request coalescing', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.close())
  let served = 0
  const origin = await startUpstream('origin', (req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    setTimeout(() => {
      served++
      const body = `answer ${served} for ${path}`
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length), 'cache-control': path.startsWith('/nostore') ? 'no-store' : 'public, max-age=60' })
      res.end(body)
    }, ORIGIN_DELAY_MS)
  })
  t.teardown(() => origin.close())
  const originHits = (path: string): number => origin.received.filter((r) => r.url === path).length

  t.test(`${INSTANCES} instances x ${PER_INSTANCE} concurrent misses -> 1 origin request`, async (t) => {
    const proxies = await fleet(t, origin, redis.url, '{ enabled: true }')
    const { answers, ms } = await storm(proxies, '/shared')
    t.ok(answers.every((a) => a.status === 200), 'every answer is 200')
    t.equal(new Set(answers.map((a) => a.body)).size, 1, 'every answer has the same body')
    t.equal(originHits('/shared'), 1, 'the origin saw exactly one request')
    t.comment(`${answers.length} requests in ${ms.toFixed(0)} ms, origin requests: ${originHits('/shared')}; ${tally(answers)}`)
    const metrics = await coalesced(proxies)
    t.comment(`switchyard_cache_coalesce_total: ${JSON.stringify(metrics)}`)
    t.match(metrics, { leader: 1, follower_hit: INSTANCES - 1 }, 'one leader; the other instances answered from its entry')
    t.ok(answers.some((a) => a.headers['cache-status'] === 'switchyard; fwd=miss; collapsed'), 'followers say collapsed')
  })

  t.test('the same on a Redis Cluster (redis+cluster://)', async (t) => {
    const cluster = await startRedisCluster()
    t.teardown(() => cluster.close())
    const proxies = await fleet(t, origin, cluster.url, '{ enabled: true }')
    const { answers, ms } = await storm(proxies, '/on-cluster')
    t.ok(answers.every((a) => a.status === 200), 'every answer is 200')
    t.equal(new Set(answers.map((a) => a.body)).size, 1, 'every answer has the same body')
    t.equal(originHits('/on-cluster'), 1, 'the origin saw exactly one request')
    t.comment(`${answers.length} requests in ${ms.toFixed(0)} ms, origin requests: ${originHits('/on-cluster')}; ${tally(answers)}`)
    t.match(await coalesced(proxies), { leader: 1, follower_hit: INSTANCES - 1 })
  })

  t.test('with coalesce.enabled false each instance fetches once', async (t) => {
    const proxies = await fleet(t, origin, redis.url, '{ enabled: false }')
    const { answers } = await storm(proxies, '/per-instance')
    t.ok(answers.every((a) => a.status === 200), 'every answer is 200')
    t.equal(originHits('/per-instance'), INSTANCES, 'one origin request per instance: the lock is what makes it one')
    t.same(await coalesced(proxies), {}, 'no coalesce metrics without the lock')
  })

  t.test('a leader answer that is not storable: followers wake at once and fetch themselves', async (t) => {
    // A wait this long would show: the followers must be woken by the release, not by the timer.
    const maxWait = 10_000
    const proxies = await fleet(t, origin, redis.url, `{ enabled: true, max_wait_ms: ${maxWait}, lock_ttl_ms: 20000 }`)
    const { answers, ms } = await storm(proxies, '/nostore')
    t.ok(answers.every((a) => a.status === 200), 'every answer is 200')
    t.ok(answers.every((a) => a.body.endsWith('for /nostore')), 'every answer is an origin answer')
    t.equal(originHits('/nostore'), INSTANCES * PER_INSTANCE, 'nothing shareable: every request fetched its own answer')
    t.comment(`${answers.length} requests in ${ms.toFixed(0)} ms (origin delay ${ORIGIN_DELAY_MS} ms, max_wait_ms ${maxWait})`)
    t.ok(ms < maxWait / 2, 'nobody waited for max_wait_ms')
    const metrics = await coalesced(proxies)
    t.comment(`switchyard_cache_coalesce_total: ${JSON.stringify(metrics)}`)
    // Each instance's flights lead or follow; on a loaded machine an instance's requests may
    // trickle in over several flights (each one counted), so at least one per instance.
    t.ok(metrics.leader >= 1 && metrics.leader + (metrics.follower_miss ?? 0) >= INSTANCES, 'the followers were woken, found nothing stored, and fetched')
    t.equal(metrics.follower_timeout, undefined, 'no follower timed out')
  })
})
