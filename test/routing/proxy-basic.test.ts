import t from 'tap'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy } from '../fixtures/proxy.js'

t.test('round-robin across two real upstreams, counted at the upstreams', async (t) => {
  const a = await startUpstream('a')
  const b = await startUpstream('b')
  const proxy = await startProxy(`
pools:
  web:
    members: [{ url: "${a.url}" }, { url: "${b.url}" }]
routes:
  - { name: all, match: { path_prefix: / }, pool: web }
`)
  t.teardown(async () => { await proxy.close(); await a.close(); await b.close() })
  for (let i = 0; i < 10; i++) {
    const r = await fetchText(`${proxy.url}/hello?x=${i}`)
    t.equal(r.status, 200)
  }
  t.equal(a.hits, 5)
  t.equal(b.hits, 5)
  t.equal(a.received[0].url, '/hello?x=0')
})
