/**
 * Purge by tag, soft purge and hosts without a port, end to end through the admin API, on the
 * memory store and on a real Redis (where a purge through one instance reaches the others).
 */
import t from 'tap'
import { startUpstream, type Upstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, waitFor, type TestProxy } from '../fixtures/proxy.js'
import { startRedis } from '../fixtures/redis.js'

const redis = await startRedis()
t.teardown(() => redis.close())

let version = 1
/** /p/<n>: tagged by path; /s: stale-while-revalidate; /e: stale-if-error (503 once `failing`). */
let failing = false
async function origin(): Promise<Upstream> {
  return startUpstream('origin', (req, res) => {
    const path = (req.url ?? '').split('?')[0]
    if (path === '/p/1') res.writeHead(200, { 'cache-control': 'public, max-age=600', 'surrogate-key': 'product-1  all' })
    else if (path === '/p/2') res.writeHead(200, { 'cache-control': 'public, max-age=600', 'cache-tag': 'product-2, all' })
    else if (path === '/s') res.writeHead(200, { 'cache-control': 'public, max-age=600, stale-while-revalidate=60' })
    else if (path === '/e') {
      if (failing) { res.writeHead(503).end('down'); return }
      res.writeHead(200, { 'cache-control': 'public, max-age=600, stale-if-error=600' })
    } else res.writeHead(200, { 'cache-control': 'public, max-age=600' })
    res.end(`${path} v${version}`)
  })
}

const yaml = (up: Upstream, store: string): string => `
pools: { p: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: all, match: { path_prefix: / }, pool: p, cache: { enabled: true } }
cache: ${store}
`

async function purge(proxy: TestProxy, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetchText(`${proxy.adminUrl}/admin/cache/purge`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: r.status, json: JSON.parse(r.body) as Record<string, unknown> }
}

const stores: [string, string][] = [
  ['memory', '{ store: memory }'],
  ['redis', `{ store: redis, redis: { url: "${redis.url}" } }`]
]

for (const [name, store] of stores) {
  t.test(`${name}: purge by Surrogate-Key and Cache-Tag`, async (t) => {
    await redis.flushall()
    const up = await origin()
    const proxy = await startProxy(yaml(up, store))
    t.teardown(async () => { await proxy.close(); await up.close() })
    const first = await fetchText(`${proxy.url}/p/1`)
    t.equal(first.headers['x-cache'], 'MISS')
    t.equal(first.headers['surrogate-key'], undefined, 'tag fields are not passed to clients (strip_tag_headers)')
    await fetchText(`${proxy.url}/p/2`)
    await fetchText(`${proxy.url}/p/3`)
    for (const p of ['/p/1', '/p/2', '/p/3']) t.equal((await fetchText(`${proxy.url}${p}`)).headers['x-cache'], 'HIT', `${p} stored`)
    const r = await purge(proxy, { tags: ['product-1'] })
    t.equal(r.status, 200)
    t.equal(r.json.purged, 1)
    t.equal((await fetchText(`${proxy.url}/p/1`)).headers['x-cache'], 'MISS', 'the tagged URL is gone')
    t.equal((await fetchText(`${proxy.url}/p/2`)).headers['x-cache'], 'HIT', 'another tag survives')
    // The refill of /p/1 is written after its answer: the next purge must find it stored.
    await waitFor(async () => (await fetchText(`${proxy.url}/p/1`)).headers['x-cache'] === 'HIT', 5000, '/p/1 stored again')
    t.equal((await purge(proxy, { tags: ['all'] })).json.purged, 2, 'a shared tag reaches both (Surrogate-Key by spaces, Cache-Tag by commas)')
    t.equal((await fetchText(`${proxy.url}/p/2`)).headers['x-cache'], 'MISS')
    t.equal((await fetchText(`${proxy.url}/p/3`)).headers['x-cache'], 'HIT', 'untagged URLs survive')
    t.equal((await purge(proxy, { tags: [] })).status, 400, 'an empty tag list is a 400')
    t.equal((await purge(proxy, { tags: 'all' })).status, 400, 'tags must be a list')
    t.equal((await purge(proxy, { tags: ['x'], soft: 'yes' })).status, 400, 'soft must be a boolean')
  })

  t.test(`${name}: a soft purge keeps stale-while-revalidate and stale-if-error working`, async (t) => {
    await redis.flushall()
    failing = false
    const up = await origin()
    const proxy = await startProxy(yaml(up, store))
    t.teardown(async () => { await proxy.close(); await up.close() })
    const host = new URL(proxy.url).host
    version = 1
    await fetchText(`${proxy.url}/s`)
    await fetchText(`${proxy.url}/e`)
    t.equal((await fetchText(`${proxy.url}/s`)).headers['x-cache'], 'HIT')
    version = 2
    const r = await purge(proxy, { url: `http://${host}/s`, soft: true })
    t.same(r.json, { purged: 1, url: `http://${host}/s`, soft: true })
    const stale = await fetchText(`${proxy.url}/s`)
    t.equal(stale.headers['x-cache'], 'STALE', 'served stale at once, refreshed in the background')
    t.equal(stale.body, '/s v1')
    await waitFor(async () => (await fetchText(`${proxy.url}/s`)).body === '/s v2', 5000, 'the background refresh')
    t.equal((await fetchText(`${proxy.url}/s`)).headers['x-cache'], 'HIT', 'the refreshed entry is fresh')

    failing = true
    t.equal((await purge(proxy, { host: '127.0.0.1', prefix: '/e', soft: true })).json.purged, 1, 'prefix purge, host without port')
    const fallback = await fetchText(`${proxy.url}/e`)
    t.equal(fallback.status, 200, 'the origin fails: the soft-purged entry still answers (stale-if-error)')
    t.equal(fallback.body, '/e v1')
    t.equal(fallback.headers['x-cache'], 'STALE')
    failing = false
  })

  t.test(`${name}: a URL purge accepts the host with or without its port`, async (t) => {
    await redis.flushall()
    const up = await origin()
    const proxy = await startProxy(yaml(up, store))
    t.teardown(async () => { await proxy.close(); await up.close() })
    const port = new URL(proxy.url).port
    await fetchText(`${proxy.url}/p/3`)
    await fetchText(`${proxy.url}/p/4`)
    t.equal((await purge(proxy, { url: 'http://127.0.0.1:1/p/3' })).json.purged, 0, 'another port is another authority')
    t.equal((await purge(proxy, { url: `http://127.0.0.1:${port}/p/3` })).json.purged, 1, 'with the port')
    t.equal((await purge(proxy, { url: 'http://127.0.0.1/p/4' })).json.purged, 1, 'without a port: every port it was stored under')
    t.equal((await fetchText(`${proxy.url}/p/4`)).headers['x-cache'], 'MISS')
  })
}

t.test('redis: a purge through one instance is seen by every instance', async (t) => {
  await redis.flushall()
  const up = await origin()
  const a = await startProxy(yaml(up, stores[1][1]))
  const b = await startProxy(yaml(up, stores[1][1]))
  t.teardown(async () => { await a.close(); await b.close(); await up.close() })
  await fetchText(`${a.url}/p/1`)
  // b keys on its own port: fetch through b with a's Host so both share the entry.
  const viaB = async (): Promise<string | string[] | undefined> => (await fetchText(`${b.url}/p/1`, { headers: { host: new URL(a.url).host } })).headers['x-cache']
  // a's store write finishes after its answer: poll until b finds the entry.
  await waitFor(async () => (await viaB()) === 'HIT', 3000, 'b to serve what a stored (same Host)')
  t.equal((await purge(b, { tags: ['product-1'] })).json.purged, 1, 'purged through b')
  // a's near-cache copy goes when Redis's invalidation reaches it (milliseconds on loopback).
  const purged = performance.now()
  await waitFor(async () => (await fetchText(`${a.url}/p/1`)).headers['x-cache'] === 'MISS', 1000, 'a to see it gone')
  t.comment(`purge through b -> a misses after ${(performance.now() - purged).toFixed(1)} ms`)
})
