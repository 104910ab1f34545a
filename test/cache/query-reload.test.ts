/**
 * The route's `cache.query` rule is part of a request's key across reloads: HttpCache keeps
 * computed keys, and a reload that starts keeping a parameter must give its values their own
 * entries (before, `?lang=fr` and `?lang=en` kept sharing the key of the old rule).
 */
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy } from '../fixtures/proxy.js'

t.test('a reload that changes cache.query re-keys requests', async (t) => {
  const up = await startUpstream('origin', (req, res) => {
    const body = `lang ${req.url ?? ''}`
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'public, max-age=600', 'content-length': String(body.length) })
    res.end(body)
  })
  t.teardown(() => up.close())
  const dir = mkdtempSync(join(tmpdir(), 'sy-query-reload-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'upstreams.yaml')
  const yaml = (query: string): string => `
cache: { store: memory }
pools: { web: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: cached, match: { path_prefix: / }, pool: web, cache: { enabled: true, query: ${query} } }
`
  const proxy = await startProxy(yaml('none'), { configPath: file })
  t.teardown(() => proxy.close())

  t.equal((await fetchText(`${proxy.url}/page?lang=fr`)).headers['x-cache'], 'MISS')
  const en = await fetchText(`${proxy.url}/page?lang=en`)
  t.equal(en.headers['x-cache'], 'HIT', 'query: none ignores lang')
  t.equal(en.body, 'lang /page?lang=fr')
  t.equal(up.received.length, 1)

  writeFileSync(file, yaml('[lang]'))
  const reload = await fetchText(`${proxy.adminUrl}/admin/reload`, { method: 'POST' })
  t.equal(reload.status, 200, reload.body)

  const fr = await fetchText(`${proxy.url}/page?lang=fr`)
  const en2 = await fetchText(`${proxy.url}/page?lang=en`)
  t.equal(up.received.length, 3, 'fr and en are two separate upstream fetches after the reload')
  t.equal(fr.body, 'lang /page?lang=fr')
  t.equal(en2.body, 'lang /page?lang=en')
  // Both now stay cached side by side (with one shared key, each would push the other out).
  for (const lang of ['fr', 'en', 'fr', 'en']) {
    const again = await fetchText(`${proxy.url}/page?lang=${lang}`)
    t.equal(again.headers['x-cache'], 'HIT', `lang=${lang} is cached under its own key`)
    t.equal(again.body, `lang /page?lang=${lang}`)
  }
  t.equal(up.received.length, 3)
})
