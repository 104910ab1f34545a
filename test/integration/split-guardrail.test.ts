import t from 'tap'
import { pino } from 'pino'
import { Writable } from 'node:stream'
import { parseConfig } from '../../src/config/load.js'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, startProxy, waitFor } from '../fixtures/proxy.js'
import { FakeClock } from '../fixtures/fake-clock.js'

interface LogLine { msg: string; level: number; [k: string]: unknown }
interface VariantView { name: string; effective_weight: number; share: number; rolled_back: { reason: string; detail: string } | null; window: { requests: number; errors_5xx: number } }
interface SplitView { name: string; promoted: string | null; variants: VariantView[]; holdout: { window: { requests: number } }; events: { action: string }[] }

t.test('a failing variant is rolled back end to end; reload keeps it; reset and promote', async (t) => {
  const clock = new FakeClock(Date.parse('2026-05-01T08:00:00Z'))
  const lines: LogLine[] = []
  const sink = new Writable({ write(chunk: Buffer, _enc, done) { for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as LogLine); done() } })
  const good = await startUpstream('good')
  const bad = await startUpstream('bad', (_req, res) => { res.writeHead(500, { 'content-type': 'text/plain' }); res.end('boom') })
  const yaml = (weights: [number, number]) => `
pools:
  pg: { members: [{ url: "${good.url}" }] }
  pb: { members: [{ url: "${bad.url}" }] }
routes:
  - name: exp
    match: { path_prefix: / }
    split:
      name: checkout
      sticky: { header: X-User-Id }
      holdout: 10
      variants: [{ name: control, pool: pg, weight: ${weights[0]} }, { name: treatment, pool: pb, weight: ${weights[1]} }]
      guardrail: { window_s: 30, min_requests: 20 }
`
  const proxy = await startProxy(yaml([50, 50]), { clock, logger: pino({ level: 'info' }, sink) })
  t.teardown(async () => { await proxy.close(); await good.close(); await bad.close() })
  const users = Array.from({ length: 100 }, (_, i) => `user-${i}`)
  const visit = (u: string) => fetchText(`${proxy.url}/`, { headers: { 'x-user-id': u } })
  const splits = async (): Promise<SplitView> => ((JSON.parse((await fetchText(`${proxy.adminUrl}/admin/splits`)).body) as { splits: SplitView[] }).splits[0])
  const metrics = async () => (await fetchText(`${proxy.adminUrl}/metrics`)).body
  const post = (path: string, headers: Record<string, string> = {}) => fetchText(`${proxy.adminUrl}${path}`, { method: 'POST', headers })

  const first = new Map<string, string>()
  for (const u of users) first.set(u, (await visit(u)).headers['x-switchyard-variant'] as string)
  for (const u of users) await visit(u)
  const treated = users.filter((u) => first.get(u) === 'treatment')
  const held = users.filter((u) => first.get(u) === 'holdout')
  t.ok(treated.length >= 20 && held.length > 0, `users: ${treated.length} treatment, ${held.length} holdout`)
  const exposures = lines.filter((l) => l.msg === 'exposure')
  t.equal(exposures.length, users.length, 'one exposure line per user, none on the second visit')
  t.match(exposures[0], { level: 30, split: 'checkout', source: 'header', key: /^[0-9a-f]{8}$/, reqId: String })
  t.notOk(JSON.stringify(exposures).includes('user-'), 'the key is logged as a hash, never the user id')
  t.equal(bad.hits, treated.length * 2, 'the treatment\'s users reached its pool')

  // Everything so far happened in one second of the fake clock; the next second's first answer
  // makes the guardrail look at the window: the treatment answers 100% 5xx against 0%.
  await clock.advance(1000)
  await visit(users[0])
  await waitFor(async () => (await splits()).variants[1].rolled_back !== null, 5000, 'the rollback')
  const view = await splits()
  t.match(view.variants[1], { name: 'treatment', effective_weight: 0, share: 0, rolled_back: { reason: '5xx', detail: /5xx ratio 100\.0% against the control's 0\.0%/ } })
  t.equal(view.variants[1].window.errors_5xx, treated.length * 2)
  t.ok(view.variants[0].window.requests >= 20 && view.holdout.window.requests === held.length * 2, 'window counts per arm, the holdout apart')
  const warn = lines.find((l) => l.msg === 'split variant rolled back by its guardrail')
  t.match(warn, { level: 40, split: 'checkout', variant: 'treatment', action: 'rollback', reason: '5xx' }, 'a warning is logged')
  await waitFor(async () => /switchyard_split_requests_total\{split="checkout",variant="control",class="2xx"\} \d+/.test(await metrics()), 5000, 'the last answer counted')
  const m = await metrics()
  t.match(m, 'switchyard_split_variant_rolled_back{split="checkout",variant="treatment"} 1')
  t.match(m, 'switchyard_split_variant_rolled_back{split="checkout",variant="control"} 0')
  t.match(m, `switchyard_split_requests_total{split="checkout",variant="treatment",class="5xx"} ${treated.length * 2}`)
  t.match(m, `switchyard_split_requests_total{split="checkout",variant="holdout",class="2xx"} ${held.length * 2}`)
  t.match(m, `switchyard_split_request_duration_seconds_count{split="checkout",variant="treatment"} ${treated.length * 2}`)
  t.match(m, 'switchyard_split_variant_weight_ratio{split="checkout",variant="treatment"} 0')
  t.match(m, `switchyard_split_exposures_total{split="checkout",variant="treatment"} ${treated.length}`)

  // Its users are drawn again: nobody reaches the failing pool, each gets a new exposure.
  const before = bad.hits
  for (const u of treated) {
    const r = await visit(u)
    if (r.status !== 200 || r.headers['x-switchyard-variant'] !== 'control') t.fail(`${u} still on the treatment`)
  }
  t.equal(bad.hits, before, 'the failing pool gets nothing')
  t.equal(lines.filter((l) => l.msg === 'exposure' && l.variant === 'control').length, users.length - held.length, 'each control user once, and each moved user once more')

  // A reload that leaves the split unchanged keeps the rollback.
  t.equal((await proxy.app.reload(parseConfig(yaml([50, 50]), 't.yaml', {}))).ok, true)
  t.equal((await splits()).variants[1].rolled_back?.reason, '5xx', 'still rolled back after a reload')

  // Mutating calls: CSRF and unknown names refused.
  t.equal((await post('/admin/splits/checkout/reset', { origin: 'http://evil.example' })).status, 403, 'a cross-site page cannot reset')
  t.equal((await post('/admin/splits/nope/reset')).status, 404)
  t.equal((await post('/admin/splits/checkout/variants/nope/promote')).status, 404)

  const reset = await post('/admin/splits/checkout/reset')
  t.equal(reset.status, 200)
  t.match(JSON.parse(reset.body), { split: 'checkout', action: 'reset', promoted: null, rolled_back: [] })
  for (const u of treated) await visit(u)
  t.equal(bad.hits, before + treated.length, 'after a reset its users are back on the treatment')
  t.match(await metrics(), 'switchyard_split_variant_rolled_back{split="checkout",variant="treatment"} 0')

  const promote = await post('/admin/splits/checkout/variants/control/promote')
  t.equal(promote.status, 200)
  t.equal((await splits()).promoted, 'control')
  for (const u of treated) await visit(u)
  t.equal(bad.hits, before + treated.length, 'the promoted control has every user')
  t.match(await metrics(), 'switchyard_split_variant_weight_ratio{split="checkout",variant="control"} 1')
  t.same((await splits()).events.map((e) => e.action), ['rollback', 'reset', 'promote'])

  // A changed split starts afresh (a new experiment).
  t.equal((await proxy.app.reload(parseConfig(yaml([60, 40]), 't.yaml', {}))).ok, true)
  const fresh = await splits()
  t.equal(fresh.promoted, null, 'a changed split forgets the promotion')
  t.same(fresh.events, [])
})
