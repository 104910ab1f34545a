/**
 * Requests that arrive while a fill of their URL is being stored wait for it only when the
 * stored answer will serve them; others go upstream at once instead of queueing fill after fill.
 */
import t from 'tap'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy } from '../fixtures/proxy.js'

t.test('concurrent misses the first answer cannot serve (another Vary value) go upstream in parallel', async (t) => {
  let active = 0
  let peak = 0
  const up = await startUpstream('slow', (req, res) => {
    active++
    peak = Math.max(peak, active)
    setTimeout(() => {
      active--
      res.writeHead(200, { 'cache-control': 'public, max-age=600', vary: 'User-Agent' }).end(`for ${req.headers['user-agent'] ?? ''}`)
    }, 200)
  })
  const proxy = await startProxy(`
pools: { p: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: all, match: { path_prefix: / }, pool: p, cache: { enabled: true } }
cache: { store: memory }
`)
  t.teardown(async () => { await proxy.close(); await up.close() })
  const started = Date.now()
  const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => fetchText(`${proxy.url}/v`, { headers: { 'user-agent': `agent-${i}` } })))
  const took = Date.now() - started
  answers.forEach((a, i) => t.equal(a.body, `for agent-${i}`, `agent-${i} got its own variant`))
  t.ok(peak >= 5, `the origin saw them in parallel (peak ${peak} at once)`)
  t.comment(`10 distinct variants in ${took} ms`)
  t.ok(took < 1500, 'not one after another (10 x 200 ms)')
  const again = await Promise.all(Array.from({ length: 10 }, (_, i) => fetchText(`${proxy.url}/v`, { headers: { 'user-agent': `agent-${i}` } })))
  t.same(again.map((a) => a.headers['x-cache']), Array(10).fill('HIT'), 'each variant was stored')
})
