/**
 * The status page and GET /admin/status on one process: a real proxy with two pools, a split
 * and a cached route takes some traffic, a member is drained and the config reloaded; the JSON
 * tells all of it, and the page rendered by headless Chromium shows it.
 */
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fetchText, startProxy, waitFor, type TestProxy } from '../fixtures/proxy.js'
import { startUpstream, type Upstream } from '../fixtures/upstream.js'
import type { TapTest } from '../fixtures/security.js'
import { findChromium, renderPage, sectionText, textOf } from './chromium.js'

interface Scene { proxy: TestProxy; a: Upstream; b: Upstream; c: Upstream; file: string }

const yaml = (a: Upstream, b: Upstream, c: Upstream, connectMs: number): string => `
cache: { store: memory }
pools:
  web: { timeouts: { connect_ms: ${connectMs} }, members: [{ name: web-a, url: "${a.url}" }, { name: web-b, url: "${b.url}" }] }
  alt: { members: [{ name: alt-c, url: "${c.url}" }] }
routes:
  - { name: static, match: { path_prefix: /static }, pool: web, cache: { enabled: true } }
  - name: exp
    match: { host: shop.test, path_prefix: /exp }
    split: { name: hero, variants: [{ name: old, pool: web, weight: 1 }, { name: new, pool: alt, weight: 1 }] }
  - { name: all, match: {}, pool: web }
sidecars:
  - { name: idle, command: ${JSON.stringify(process.execPath)}, args: ["-e", "setInterval(() => {}, 1e9)"] }
`

async function scene(t: TapTest): Promise<Scene> {
  const cacheable = (_req: unknown, res: import('node:http').ServerResponse, self: Upstream): void => { res.writeHead(200, { 'cache-control': 'max-age=300' }); res.end(self.name) }
  const [a, b, c] = await Promise.all([startUpstream('a', cacheable), startUpstream('b', cacheable), startUpstream('c', cacheable)])
  t.teardown(async () => { await a.close(); await b.close(); await c.close() })
  const dir = mkdtempSync(join(tmpdir(), 'sy-status-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'switchyard.yaml')
  const proxy = await startProxy(yaml(a, b, c, 2000), { configPath: file, sidecars: true })
  t.teardown(() => proxy.close())
  await waitFor(() => proxy.app.control.sidecars().some((x) => x.state === 'running'), 10000, 'the sidecar to run')
  return { proxy, a, b, c, file }
}

/** Traffic the checks count on: 1 miss + 1 hit, split 3 old : 1 new, web-b drained, one reload. */
async function traffic(t: TapTest, s: Scene): Promise<void> {
  const { proxy } = s
  t.equal((await fetchText(`${proxy.url}/static/logo.png`)).headers['x-cache'], 'MISS')
  t.equal((await fetchText(`${proxy.url}/static/logo.png`)).headers['x-cache'], 'HIT')
  for (const v of ['old', 'old', 'old', 'new']) t.equal((await fetchText(`${proxy.url}/exp`, { headers: { host: 'shop.test', 'x-switchyard-variant': v } })).status, 200)
  t.equal((await fetchText(`${proxy.adminUrl}/admin/pools/web/members/web-b/drain`, { method: 'POST' })).status, 200)
  for (let i = 0; i < 10; i++) t.equal((await fetchText(`${proxy.url}/page/${i}`)).body, 'a')
  writeFileSync(s.file, yaml(s.a, s.b, s.c, 3000))
  t.equal((await fetchText(`${proxy.adminUrl}/admin/reload`, { method: 'POST' })).status, 200)
}

interface Status {
  mode: string
  ready: boolean
  window_s: number | null
  listeners: { name: string; address: string; protocol: string; tls: boolean; http2: string | null }[]
  routes: { name: string; host: string | null; path_prefix: string; pool: string | null; split: string | null; cache: boolean }[]
  pools: { name: string; balancer: string; members: { name: string; healthy: boolean; drained: boolean; requests: number; in_flight: number; rps: number | null; p99_ms: number | null; p99_ms_total: number | null; failures: number }[] }[]
  splits: { name: string; route: string; variants: { name: string; pool: string; weight_share: number; share: number | null; share_total: number | null; assigned: number }[] }[]
  cache: { enabled: boolean; store: string; entries: number; bytes: number; hit_ratio: number | null; hit_ratio_total: number | null; lookups: Record<string, number> }
  sidecars: unknown[]
  reloads: { at: string; ok: boolean; summary: { live: number; rebuild: number; restart: number }; changes: { path: string; class: string }[] }[]
}

const getStatus = async (p: TestProxy): Promise<Status> => {
  const r = await fetchText(`${p.adminUrl}/admin/status`)
  if (r.status !== 200) throw new Error(`GET /admin/status: ${r.status} ${r.body}`)
  return JSON.parse(r.body) as Status
}

t.test('GET /admin/status: listeners, routes, pools and members, splits, cache, reloads; rates over a window', async (t) => {
  const s = await scene(t)
  const first = await getStatus(s.proxy)
  t.equal(first.window_s, null, 'the first answer has no window yet')
  t.equal(first.pools.find((p) => p.name === 'web')?.members[0].rps, null)
  await traffic(t, s)
  // Rates need a snapshot at least a second old: poll until the window exists.
  let st = await getStatus(s.proxy)
  await waitFor(async () => { st = await getStatus(s.proxy); return st.window_s !== null }, 5000, 'a rate window')

  t.equal(st.mode, 'single')
  t.equal(st.ready, true)
  t.match(st.listeners, [{ address: s.proxy.url, protocol: s.proxy.url.startsWith('https') ? 'https' : 'http' }])
  t.match(st.routes, [
    { name: 'static', host: null, path_prefix: '/static', pool: 'web', split: null, cache: true },
    { name: 'exp', host: 'shop.test', path_prefix: '/exp', pool: null, split: 'hero', cache: false },
    { name: 'all', pool: 'web', cache: false }
  ])
  const web = st.pools.find((p) => p.name === 'web')
  t.ok(web)
  const [wa, wb] = web?.members ?? []
  t.match(wa, { name: 'web-a', healthy: true, drained: false, in_flight: 0, failures: 0 })
  t.match(wb, { name: 'web-b', healthy: true, drained: true })
  t.equal(wa.requests + wb.requests, 14, 'web took 1 cache miss, 3 split requests and 10 pages')
  t.ok((wa.rps ?? 0) > 0, `web-a has a request rate over the window (${wa.rps}/s)`)
  t.ok(wa.p99_ms !== null && wa.p99_ms > 0, `web-a has a p99 over the window (${wa.p99_ms} ms)`)
  t.ok(wa.p99_ms_total !== null && wa.p99_ms_total > 0)
  t.match(st.splits, [{ name: 'hero', route: 'exp', variants: [
    { name: 'old', pool: 'web', weight_share: 0.5, assigned: 3, share: 0.75, share_total: 0.75 },
    { name: 'new', pool: 'alt', weight_share: 0.5, assigned: 1, share: 0.25, share_total: 0.25 }
  ] }])
  t.match(st.cache, { enabled: true, store: 'memory', entries: 1, hit_ratio: 0.5, hit_ratio_total: 0.5, lookups: { hit: 1, miss: 1 } })
  t.ok(st.cache.bytes > 0)
  t.match(st.sidecars, [{ name: 'idle', state: 'running', restarts: 0 }])
  t.equal(st.reloads.length, 1)
  t.match(st.reloads[0], { ok: true, summary: { rebuild: 1 }, changes: [{ path: 'pools.web.timeouts.connect_ms', class: 'rebuild' }] })
  t.ok(Date.now() - Date.parse(st.reloads[0].at) < 60000, 'the reload carries its time')

  const failed = await (async () => { writeFileSync(s.file, 'pools: [not, a, mapping]\n'); return fetchText(`${s.proxy.adminUrl}/admin/reload`, { method: 'POST' }) })()
  t.equal(failed.status, 422)
  const after = await getStatus(s.proxy)
  t.equal(after.reloads.length, 2, 'a rejected reload is kept too, newest first')
  t.match(after.reloads[0], { ok: false, error: /./ })
})

t.test('the status page on / is self-contained: one HTML document, its own script and style only', async (t) => {
  const s = await scene(t)
  const page = await fetchText(`${s.proxy.adminUrl}/`)
  t.equal(page.status, 200)
  t.match(page.headers['content-type'], /^text\/html; charset=utf-8/)
  t.match(page.headers['content-security-policy'], /default-src 'none'; script-src 'sha256-[A-Za-z0-9+/=]+'/)
  t.notMatch(page.body, /<script[^>]+src=|<link[^>]+href=|https?:\/\//, 'no external script, style or URL')
  t.match(page.body, /fetch\("admin\/status"/, 'it polls /admin/status')
})

const chromium = findChromium()
t.test('the status page rendered by headless Chromium shows pools, members, health, drain, split shares, the cache and the last reload', {
  skip: chromium === undefined ? 'no chromium binary found (install Debian\'s `chromium` package, or set CHROMIUM_BIN): the page is not rendered' : false
}, async (t) => {
  const s = await scene(t)
  await traffic(t, s)
  const screenshot = join(tmpdir(), 'switchyard-status-page.png')
  const dom = await renderPage(chromium as string, `${s.proxy.adminUrl}/`, { screenshot })
  t.comment(`status page screenshot: ${screenshot}`)
  t.ok(statSync(screenshot).size > 1000, 'the screenshot was saved')
  t.match(dom, /<body[^>]*data-loaded="true"/, 'the page loaded /admin/status and rendered it')
  t.match(textOf(dom), /single process/)

  const listeners = sectionText(dom, 'listeners')
  t.match(listeners, new URL(s.proxy.url).host)
  const routes = sectionText(dom, 'routes')
  t.match(routes, /static any \/static any web cached/)
  t.match(routes, /exp shop\.test \/exp any split hero no/)

  const pools = sectionText(dom, 'pools')
  t.match(pools, /Pool web balancer round_robin/)
  t.match(pools, /web-a http:\/\/127\.0\.0\.1:\d+ healthy/, 'member web-a, healthy')
  t.match(pools, /web-b http:\/\/127\.0\.0\.1:\d+ drained healthy/, 'member web-b, drained')
  t.match(pools, /Pool alt balancer round_robin/)
  t.match(pools, /alt-c http:\/\/127\.0\.0\.1:\d+ healthy/)

  const splits = sectionText(dom, 'splits')
  t.match(splits, /Split hero route exp/)
  t.match(splits, /old web 50\.0% .*75\.0% 3/, 'variant old: configured 50%, assigned 75% so far')
  t.match(splits, /new alt 50\.0% .*25\.0% 1/)

  const cache = sectionText(dom, 'cache')
  t.match(cache, /memory .*50\.0%/, 'the cache hit ratio')
  t.match(cache, /hit 1, miss 1/)

  const reloads = sectionText(dom, 'reloads')
  t.match(reloads, /applied 1 change \(live 0, rebuild 1, restart 0\) pools\.web\.timeouts\.connect_ms rebuild 2000 -> 3000/, 'the reload and its change')
  t.match(sectionText(dom, 'sidecars'), /idle running \d+ 0 /, 'the sidecar, its state and restarts')
})
