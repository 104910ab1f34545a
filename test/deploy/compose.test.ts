import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { isAbsolute, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parse as parseYaml } from 'yaml'

const run = promisify(execFile)
const root = fileURLToPath(new URL('../../../', import.meta.url))

async function has(cmd: string, args: string[]): Promise<boolean> {
  try { await run(cmd, args, { cwd: root }); return true } catch { return false }
}

interface ComposeService { image?: string; ports?: unknown[]; volumes?: (string | { type?: string; source?: string; target?: string; read_only?: boolean })[]; environment?: Record<string, string | null> }

/** A volume entry as `docker-compose config` prints it (short "src:dst[:mode]" or long form). */
function mount(v: string | { type?: string; source?: string; target?: string; read_only?: boolean }): { source: string; target: string; readOnly: boolean } {
  if (typeof v !== 'string') return { source: v.source ?? '', target: v.target ?? '', readOnly: v.read_only === true }
  const [source, target, mode] = v.split(':')
  return { source, target, readOnly: (mode ?? '').split(',').includes('ro') }
}

function published(ports: unknown[] | undefined): number[] {
  return (ports ?? []).map((p) => typeof p === 'object' && p !== null ? Number((p as { published: unknown }).published) : Number(String(p).split(':')[0]))
}

const compose = await has('docker-compose', ['version'])
const noCompose = compose ? false : 'docker-compose is not installed (apt-get install docker-compose)'

t.test('docker-compose.yml is accepted by docker-compose config', { skip: noCompose }, async (t) => {
  const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', 'config', '--services'], { cwd: root })
  t.same(stdout.trim().split('\n').sort(), ['grafana', 'prometheus', 'proxy', 'redis', 'whoami-1', 'whoami-2', 'whoami-3'])
})

t.test('prometheus and grafana mount the files deploy/ ships, read-only', { skip: noCompose }, async (t) => {
  const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', 'config'], { cwd: root })
  const services = (parseYaml(stdout) as { services: Record<string, ComposeService> }).services
  const prometheus = services.prometheus
  const grafana = services.grafana
  t.match(prometheus.image, /^prom\/prometheus:/)
  t.match(grafana.image, /^grafana\/grafana:/)
  t.same(published(prometheus.ports), [9090])
  t.same(published(grafana.ports), [3000])
  t.same(published(services.proxy.ports).includes(9901), true, 'the proxy admin port, which Prometheus scrapes')
  t.equal(services.proxy.environment?.SWITCHYARD_ADMIN_HOST, '0.0.0.0', 'the admin listener is reachable from the prometheus container')

  const binds = (svc: ComposeService) => (svc.volumes ?? []).map(mount).filter((m) => isAbsolute(m.source) || m.source.startsWith('.'))
  const expected: [ComposeService, string, string, 'file' | 'dir'][] = [
    [prometheus, '/etc/prometheus/prometheus.yml', 'deploy/prometheus/prometheus.yml', 'file'],
    [prometheus, '/etc/prometheus/alerts.yml', 'deploy/prometheus/alerts.yml', 'file'],
    [grafana, '/etc/grafana/provisioning/datasources', 'deploy/grafana/provisioning/datasources', 'dir'],
    [grafana, '/etc/grafana/provisioning/dashboards', 'deploy/grafana/provisioning/dashboards', 'dir'],
    [grafana, '/var/lib/grafana/dashboards', 'deploy/grafana/dashboards', 'dir']
  ]
  for (const [svc, target, rel, kind] of expected) {
    const m = binds(svc).find((b) => b.target === target)
    t.ok(m, `${target} is mounted`)
    if (m === undefined) continue
    t.equal(resolve(root, m.source), resolve(root, rel), `${target} comes from ${rel}`)
    t.ok(existsSync(m.source), `${m.source} exists`)
    t.equal(kind === 'file' ? statSync(m.source).isFile() : statSync(m.source).isDirectory(), true, `${m.source} is a ${kind}`)
    t.ok(m.readOnly, `${target} is read-only`)
  }
  // Every bind mount of the two services points at something in the checkout.
  for (const svc of [prometheus, grafana]) for (const b of binds(svc)) t.ok(existsSync(b.source), `${b.source} exists`)
  t.ok(existsSync(resolve(root, 'deploy/grafana/dashboards/switchyard.json')))
  t.equal(grafana.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH, '/var/lib/grafana/dashboards/switchyard.json', 'the dashboard is the home page')
  t.equal(grafana.environment?.GF_AUTH_ANONYMOUS_ORG_ROLE, 'Viewer', 'anonymous visitors can only view')
})

t.test('the shipped upstreams.yaml passes switchyard check', async (t) => {
  const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))
  const { stdout } = await run(process.execPath, [cli, 'check', 'upstreams.yaml'], { cwd: root })
  t.match(stdout, /upstreams\.yaml: ok/)
  // As docker-compose.yml runs it: backends elsewhere, no demo sidecars.
  const env = { ...process.env, DEMO_SIDECARS: 'false', WHOAMI_1_URL: 'http://whoami-1:9001' }
  const r = await run(process.execPath, [cli, 'check', 'upstreams.yaml'], { cwd: root, env })
  t.match(r.stdout, /upstreams\.yaml: ok/)
})
