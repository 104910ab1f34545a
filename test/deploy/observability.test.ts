/**
 * The monitoring that deploy/ ships (Prometheus scrape config and alert rules, the Grafana
 * dashboard and its provisioning) queries only what the proxy exports: every metric name in
 * every PromQL expression is looked up in the exposition of a running proxy configured so that
 * every family is registered (TLS listener, cached route on Redis, split, sidecar), and the
 * label names each selector matches on or groups by are checked against the samples.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { get as httpsGet } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parse as parseYaml } from 'yaml'
import { startProxy, fetchText, waitFor } from '../fixtures/proxy.js'
import { deadPort, startUpstream } from '../fixtures/upstream.js'
import { startRedis } from '../fixtures/redis.js'
import { exprRefs, familyOf, metricNames, parseExposition, variableQueryExpr, type Exposition } from './observability-promql.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('../../../', import.meta.url))
const deploy = (rel: string): string => join(root, 'deploy', rel)

// ---- what deploy/ ships -------------------------------------------------------------------

interface Rule { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
interface RuleFile { groups: { name: string; rules: Rule[] }[] }
interface Target { expr?: string; datasource?: { type?: string; uid?: string }; refId?: string }
interface Panel { id: number; type: string; title: string; gridPos: { x: number; y: number; w: number; h: number }; datasource?: { type?: string; uid?: string }; targets?: Target[]; panels?: Panel[] }
interface Variable { name: string; type: string; query: string | { query: string }; datasource?: { uid?: string } }
interface Dashboard { uid: string; title: string; schemaVersion: number; panels: Panel[]; templating: { list: Variable[] } }

const rules = (parseYaml(readFileSync(deploy('prometheus/alerts.yml'), 'utf8')) as RuleFile).groups.flatMap((g) => g.rules)
const dashboard = JSON.parse(readFileSync(deploy('grafana/dashboards/switchyard.json'), 'utf8')) as Dashboard
const datasources = (parseYaml(readFileSync(deploy('grafana/provisioning/datasources/prometheus.yml'), 'utf8')) as { datasources: { uid: string; type: string; url: string }[] }).datasources
const promConfig = parseYaml(readFileSync(deploy('prometheus/prometheus.yml'), 'utf8')) as { rule_files: string[]; scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[] }

const allPanels = (ps: Panel[]): Panel[] => ps.flatMap((p) => [p, ...allPanels(p.panels ?? [])])
const variableQuery = (v: Variable): string => typeof v.query === 'string' ? v.query : v.query.query

/** Every PromQL expression shipped, with where it comes from. */
const expressions: { where: string; expr: string }[] = [
  ...rules.map((r) => ({ where: `alerts.yml ${r.alert ?? r.record}`, expr: r.expr })),
  ...allPanels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((tg) => ({ where: `dashboard panel "${p.title}" ${tg.refId}`, expr: tg.expr ?? '' }))),
  ...dashboard.templating.list.filter((v) => v.type === 'query').flatMap((v) => {
    const expr = variableQueryExpr(variableQuery(v))
    return expr === undefined ? [] : [{ where: `dashboard variable $${v.name}`, expr }]
  })
]

/** Written by Prometheus for each scrape target, not by the proxy. */
const PROMETHEUS_SERIES = new Set(['up'])
/** Labels Prometheus attaches to every scraped series (the target's), absent from the exposition. */
const TARGET_LABELS = new Set(['instance', 'job'])

// ---- the tokenizer ------------------------------------------------------------------------

t.test('the PromQL tokenizer finds metric names and skips everything else', async (t) => {
  t.same(metricNames('sum by (route, pool) (rate(switchyard_requests_total{code=~"5..", route!="x"}[5m])) / ignoring (code) group_left sum by (route) (rate(b_total[$__rate_interval] offset 1h30m))'), ['switchyard_requests_total', 'b_total'])
  t.same(metricNames('histogram_quantile(0.99, sum without (instance) (rate(lat_seconds_bucket{a="}{"}[1m])))'), ['lat_seconds_bucket'])
  t.same(metricNames('expiry_seconds - time() < 14 * 86400 and on (x) bool 1e3 unless topk(5, other) or inf > nan'), ['expiry_seconds', 'other'])
  t.same(metricNames('label_replace(rate(x_total[1m]), "class", "${1}xx", "code", "(.)..") * on (instance) group_left (version) info @ start()'), ['x_total', 'info'])
  t.same(metricNames('{__name__="by_name", job="j"} + count_values("v", y) # comment naming z'), ['by_name', 'y'])
  t.same(metricNames('up{job="switchyard"} == 0'), ['up'])
  const refs = exprRefs('sum by (instance, pool) (h{pool=~"$pool", member!=""}) / ignoring (le) c')
  t.same(refs.selectors, [{ name: 'h', matchers: ['pool', 'member'] }, { name: 'c', matchers: [] }])
  t.same(refs.grouping, ['instance', 'pool', 'le'])
  t.same(variableQueryExpr('label_values(m{instance=~"$instance"}, route)'), 'm{instance=~"$instance"}')
  t.equal(variableQueryExpr('label_values(route)'), undefined)
  t.equal(familyOf('h_bucket', new Map([['h', 'histogram']])), 'h')
  t.equal(familyOf('h_count', new Map([['h', 'histogram']])), 'h')
  t.equal(familyOf('g_count', new Map([['g', 'gauge']])), undefined)
  t.equal(familyOf('missing', new Map([['h', 'histogram']])), undefined)
})

// ---- the files themselves -----------------------------------------------------------------

t.test('alerts.yml covers the six alert kinds, each with for/severity/summary/description', async (t) => {
  const alerts = rules.filter((r) => r.alert !== undefined)
  const byMetric = (name: string): Rule[] => alerts.filter((r) => metricNames(r.expr).includes(name))
  t.ok(byMetric('switchyard_upstream_healthy').length > 0, 'member down')
  t.ok(byMetric('switchyard_requests_total').some((r) => r.expr.includes('code=~"5.."')), '5xx ratio')
  t.ok(byMetric('switchyard_cache_store_errors_total').some((r) => r.expr.includes('store="redis"')), 'Redis cache errors')
  t.ok(byMetric('switchyard_config_last_reload_successful').length > 0, 'config reload failed')
  t.ok(byMetric('switchyard_tls_certificate_reloads_total').length > 0, 'certificate reload failed')
  t.ok(byMetric('switchyard_sidecar_restarts_total').length > 0, 'sidecar restarting')
  t.ok(byMetric('switchyard_tls_certificate_expiry_timestamp_seconds').length > 0, 'certificate expiring')
  const names = alerts.map((a) => a.alert)
  t.same(names.length, new Set(names).size, 'alert names are unique')
  for (const a of alerts) {
    t.match(a.alert, /^Switchyard[A-Z][A-Za-z0-9]+$/, `${a.alert}: named SwitchyardSomething`)
    t.ok(['warning', 'critical'].includes(a.labels?.severity ?? ''), `${a.alert}: severity warning or critical`)
    t.ok((a.annotations?.summary ?? '').length > 0 && (a.annotations?.description ?? '').length > 0, `${a.alert}: summary and description`)
    // Labels an annotation names must be ones the expression keeps.
    for (const m of `${a.annotations?.summary} ${a.annotations?.description}`.matchAll(/\$labels\.([a-zA-Z_]+)/g)) {
      const refs = exprRefs(a.expr)
      const grouped = refs.grouping.length > 0 && /\bby\s*\(/.test(a.expr)
      t.ok(!grouped || refs.grouping.includes(m[1]), `${a.alert}: annotation label ${m[1]} survives the aggregation`)
    }
  }
  // Every alert has a promtool unit test case in which it fires.
  const unit = parseYaml(readFileSync(deploy('prometheus/alerts.test.yml'), 'utf8')) as { tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[] }
  const firing = new Set(unit.tests.flatMap((c) => c.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)))
  for (const a of alerts) t.ok(firing.has(a.alert ?? ''), `${a.alert}: alerts.test.yml has a case where it fires`)
})

t.test('prometheus.yml scrapes the proxy admin listener and loads alerts.yml', async (t) => {
  t.same(promConfig.rule_files, ['alerts.yml'])
  const job = promConfig.scrape_configs.find((s) => s.job_name === 'switchyard')
  t.ok(job, 'a switchyard job')
  t.equal(job?.metrics_path ?? '/metrics', '/metrics')
  t.same(job?.static_configs.flatMap((s) => s.targets), ['proxy:9901'], 'the compose proxy service, admin port')
  const jobs = new Set(promConfig.scrape_configs.map((s) => s.job_name))
  for (const { where, expr } of expressions) {
    for (const m of expr.matchAll(/\bjob\s*=\s*"([^"]*)"/g)) t.ok(jobs.has(m[1]), `${where}: job="${m[1]}" is a scrape job`)
  }
})

t.test('the dashboard is a provisionable Grafana dashboard', async (t) => {
  t.equal(typeof dashboard.uid, 'string')
  t.ok(dashboard.uid.length > 0 && dashboard.uid.length <= 40, 'uid of at most 40 characters')
  t.ok(Number.isInteger(dashboard.schemaVersion) && dashboard.schemaVersion >= 36, 'schemaVersion')
  t.equal(datasources.length, 1)
  const ds = datasources[0]
  t.equal(ds.type, 'prometheus')
  t.equal(ds.url, 'http://prometheus:9090', 'the compose prometheus service')
  const panels = allPanels(dashboard.panels)
  const ids = panels.map((p) => p.id)
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  // Panels sit on the 24-column grid without overlapping.
  const cells = new Map<string, string>()
  for (const p of panels) {
    const g = p.gridPos
    t.ok(Number.isInteger(g.x) && Number.isInteger(g.y) && g.w > 0 && g.h > 0 && g.x + g.w <= 24, `${p.title}: gridPos inside the grid`)
    for (let x = g.x; x < g.x + g.w; x++) {
      for (let y = g.y; y < g.y + g.h; y++) {
        const other = cells.get(`${x},${y}`)
        if (other !== undefined) t.fail(`${p.title} overlaps ${other} at ${x},${y}`)
        cells.set(`${x},${y}`, p.title)
      }
    }
    if (p.type === 'row') continue
    t.ok((p.targets ?? []).length > 0, `${p.title}: has queries`)
    t.equal(p.datasource?.uid, ds.uid, `${p.title}: panel datasource is the provisioned one`)
    for (const tg of p.targets ?? []) {
      t.equal(tg.datasource?.uid, ds.uid, `${p.title} ${tg.refId}: target datasource is the provisioned one`)
      t.ok((tg.expr ?? '').length > 0, `${p.title} ${tg.refId}: has an expression`)
    }
  }
  // The sections the issue asks for.
  const titles = panels.map((p) => p.title).join('\n')
  for (const want of [/Requests\/s by route and status class/, /Latency percentiles/, /Upstream errors by kind/, /Member health/, /Ejections/, /Cache hit ratio/, /Cache size/, /Split shares/, /Sidecar state/, /Sidecar restarts/, /Certificate expiry/]) {
    t.match(titles, want)
  }
  // Template variables: instance, route, pool; every $variable used is defined (or Grafana's own).
  const vars = dashboard.templating.list
  t.same(vars.map((v) => v.name), ['instance', 'route', 'pool'])
  for (const v of vars) t.equal(v.datasource?.uid, ds.uid, `$${v.name}: datasource is the provisioned one`)
  const defined = new Set([...vars.map((v) => v.name), '__rate_interval', '__interval', '__range', '__range_s'])
  for (const { where, expr } of expressions) {
    for (const m of expr.matchAll(/\$\{?(\w+)/g)) {
      if (/^\d+$/.test(m[1])) continue // label_replace's ${1}
      t.ok(defined.has(m[1]), `${where}: $${m[1]} is defined`)
    }
  }
  const provider = parseYaml(readFileSync(deploy('grafana/provisioning/dashboards/switchyard.yml'), 'utf8')) as { providers: { type: string; options: { path: string } }[] }
  t.equal(provider.providers[0].type, 'file')
  t.equal(provider.providers[0].options.path, '/var/lib/grafana/dashboards', 'where docker-compose.yml mounts deploy/grafana/dashboards')
})

// ---- against a running proxy --------------------------------------------------------------

/** GET over TLS, accepting the self-signed certificate; resolves with the status. */
function httpsStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsGet(url, { rejectUnauthorized: false, agent: false, timeout: 5000 }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url}`)))
    req.on('error', reject)
  })
}

t.test('every metric the dashboard and the rules query is exported by a running proxy', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.close())
  const origin = await startUpstream('origin', (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'public, max-age=60' })
    res.end(`origin ${req.url}`)
  })
  t.teardown(() => origin.close())
  const dead = await deadPort()
  const proxy = await startProxy(`
listen:
  - { host: 127.0.0.1, port: 0 }
  - { host: 127.0.0.1, port: 0, tls: { self_signed: true } }
admin: { host: 127.0.0.1, port: 0 }
cache: { store: redis, redis: { url: "${redis.url}", timeout_ms: 500 } }
pools:
  origin: { members: [{ url: "${origin.url}", name: origin-1 }] }
  next: { members: [{ url: "${origin.url}", name: next-1 }] }
  flaky:
    balancer: round_robin
    members: [{ url: "http://127.0.0.1:${dead}", name: dead }, { url: "${origin.url}", name: live }]
    outlier: { consecutive_failures: 1 }
    panic_threshold_percent: 0
routes:
  - { name: cached, match: { path_prefix: /cached }, pool: origin, cache: { enabled: true } }
  - { name: flaky, match: { path_prefix: /flaky }, pool: flaky }
  - name: ab
    match: { path_prefix: / }
    split: { name: homepage, variants: [{ name: control, pool: origin, weight: 1 }, { name: next, pool: next, weight: 1 }] }
sidecars:
  - { name: idle, command: ${JSON.stringify(process.execPath)}, args: ["-e", "setInterval(() => {}, 60000)"] }
`, { sidecars: true })
  t.teardown(() => proxy.close())

  // Traffic, so that most families have samples whose labels can be checked too.
  t.equal((await fetchText(`${proxy.url}/cached/a`)).status, 200)
  await waitFor(async () => (await fetchText(`${proxy.url}/cached/a`)).headers['x-cache'] === 'HIT', 5000, 'a cache hit')
  t.equal((await fetchText(`${proxy.url}/cached/a`)).headers['x-cache'], 'HIT')
  for (let i = 0; i < 4; i++) t.equal((await fetchText(`${proxy.url}/flaky/${i}`)).status, 200, 'the dead member is retried on the live one')
  t.equal((await fetchText(`${proxy.url}/home`)).status, 200)
  t.equal(await httpsStatus(`${proxy.urls[1]}/home`), 200)
  t.equal((await fetchText(`${proxy.url}/home`, { method: 'TRACE' })).status, 405, 'answered by the proxy itself')
  // Redis goes away: the cache's next calls fail (counted with store="redis") and the request is served anyway.
  await redis.stop()
  t.equal((await fetchText(`${proxy.url}/cached/b`)).status, 200)
  let text = ''
  await waitFor(async () => {
    text = (await fetchText(`${proxy.adminUrl}/metrics`)).body
    return /switchyard_cache_store_errors_total\{store="redis"/.test(text) && /switchyard_sidecar_up\{sidecar="idle"\} 1/.test(text)
  }, 10000, 'Redis store errors and the sidecar up in /metrics')
  const expo: Exposition = parseExposition(text)

  const unsampled = new Set<string>()
  for (const { where, expr } of expressions) {
    const refs = exprRefs(expr)
    t.ok(refs.selectors.length > 0, `${where}: selects at least one metric`)
    const sampled = new Set<string>([...TARGET_LABELS, ...refs.strings])
    for (const sel of refs.selectors) {
      if (PROMETHEUS_SERIES.has(sel.name)) continue
      const family = familyOf(sel.name, expo.types)
      t.ok(family !== undefined, `${where}: ${sel.name} is exported (# TYPE line in /metrics)`)
      const labels = expo.sampleLabels.get(sel.name)
      if (labels === undefined) { unsampled.add(sel.name); continue }
      for (const l of labels) sampled.add(l)
      for (const m of sel.matchers) {
        t.ok(TARGET_LABELS.has(m) || labels.has(m), `${where}: ${sel.name} has a label ${m}`)
      }
    }
    // Grouping labels: on some selected series, made by label_replace, or the target's.
    const allSampled = refs.selectors.every((s) => PROMETHEUS_SERIES.has(s.name) || expo.sampleLabels.has(s.name))
    if (allSampled) for (const g of refs.grouping) t.ok(sampled.has(g), `${where}: grouping label ${g} exists`)
  }
  t.comment(`families referenced without samples in this run (names checked, labels not): ${[...unsampled].sort().join(', ') || 'none'}`)
  // Only switchyard_retry_budget_exhausted_total (a spent budget) is expected here.
  t.ok(unsampled.size <= 2, 'the traffic above gives samples to nearly every referenced family')
})

// ---- promtool -----------------------------------------------------------------------------

async function has(cmd: string, args: string[]): Promise<boolean> {
  try { await run(cmd, args); return true } catch { return false }
}
const promtool = await has('promtool', ['--version'])
const noPromtool = promtool ? false : 'promtool is not installed (apt-get install prometheus)'

t.test('promtool check config and check rules', { skip: noPromtool }, async (t) => {
  const config = await run('promtool', ['check', 'config', deploy('prometheus/prometheus.yml')])
  t.match(config.stdout, /SUCCESS/)
  const checked = await run('promtool', ['check', 'rules', deploy('prometheus/alerts.yml')])
  t.match(checked.stdout, new RegExp(`SUCCESS: ${rules.length} rules found`))
})

t.test('promtool test rules: each alert fires on what should fire it and not on the rest', { skip: noPromtool }, async (t) => {
  const tested = await run('promtool', ['test', 'rules', deploy('prometheus/alerts.test.yml')]).catch((err: { stdout?: string; stderr?: string }) => err)
  t.match(tested.stdout ?? '', /SUCCESS/, tested.stderr ?? '')
})

t.test('promtool parses every dashboard expression', { skip: noPromtool }, async (t) => {
  // As Grafana sends them: its variables replaced by values of the right kind.
  const values: Record<string, string> = { __rate_interval: '1m', __interval: '15s', __range: '1h', __range_s: '3600', instance: '.*', route: '.*', pool: '.*' }
  const dashboardExprs = expressions.filter((e) => e.where.startsWith('dashboard'))
  const recordRules = dashboardExprs.map((e, i) => ({
    record: `dashboard:expr_${i}`,
    expr: e.expr.replace(/\$\{?(\w+)\}?/g, (whole, name: string) => values[name] ?? whole)
  }))
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-dashboard-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'dashboard-rules.yml')
  writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules: recordRules }] }))
  t.ok(existsSync(file))
  const checked = await run('promtool', ['check', 'rules', file]).catch((err: { stdout?: string; stderr?: string }) => err)
  t.match(checked.stdout ?? '', new RegExp(`SUCCESS: ${recordRules.length} rules found`), checked.stderr ?? '')
})
