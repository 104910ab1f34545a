/** Purge by URL reaches entries of routes that key on some query parameters only. */
import t from 'tap'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy } from '../fixtures/proxy.js'

t.test('a URL purge finds the entry a `query` rule keyed', async (t) => {
  const up = await startUpstream('u', (req, res) => { res.writeHead(200, { 'cache-control': 'public, max-age=600' }).end(`v${req.url}`) })
  const proxy = await startProxy(`
pools: { p: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: some, match: { path_prefix: /some }, pool: p, cache: { enabled: true, query: [id] } }
  - { name: none, match: { path_prefix: /none }, pool: p, cache: { enabled: true, query: none } }
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const host = new URL(proxy.url).host
  for (const path of ['/some/a?utm=1&id=7', '/none/b?x=1']) {
    t.equal((await fetchText(`${proxy.url}${path}`)).headers['x-cache'], 'MISS', `${path}: stored`)
    t.equal((await fetchText(`${proxy.url}${path}`)).headers['x-cache'], 'HIT')
  }
  const purge = async (url: string): Promise<{ purged: number }> => JSON.parse((await fetchText(`${proxy.adminUrl}/admin/cache/purge`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url })
  })).body)
  // Another utm value: the route keys on id only, so this names the same entry.
  t.equal((await purge(`http://${host}/some/a?id=7&utm=9`)).purged, 1, 'found under the keyed query')
  t.equal((await purge(`http://${host}/none/b?y=2`)).purged, 1, 'a route that ignores the query')
  t.equal((await fetchText(`${proxy.url}/some/a?utm=1&id=7`)).headers['x-cache'], 'MISS', 'gone')
  t.equal((await fetchText(`${proxy.url}/none/b?x=1`)).headers['x-cache'], 'MISS', 'gone')
})
