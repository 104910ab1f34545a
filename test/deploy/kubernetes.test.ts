/**
 * deploy/kubernetes without a cluster: every manifest is checked against the Kubernetes API
 * schemas (kubernetes-models), the ConfigMap's upstreams.yaml against Switchyard's own config
 * validation, and the two against each other (probe ports and paths, the config path, the drain
 * time inside the grace period). Then the proxy runs that config as the pod would.
 */
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parseAllDocuments, parseDocument } from 'yaml'
import { Deployment } from 'kubernetes-models/apps/v1/Deployment'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget'
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap'
import { Service } from 'kubernetes-models/v1/Service'
import type { IContainer } from 'kubernetes-models/v1/Container'
import type { IContainerPort } from 'kubernetes-models/v1/ContainerPort'
import { parseConfig } from '../../src/config/load.js'
import { CLI } from '../fixtures/cli.js'
import { deadPort } from '../fixtures/upstream.js'
import { fetchText, waitFor } from '../fixtures/proxy.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('../../../', import.meta.url))
const dir = join(root, 'deploy/kubernetes')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }

type Manifest = { apiVersion?: string; kind?: string; metadata?: { name?: string; labels?: Record<string, string> }; [k: string]: unknown }
interface Validatable { validate(): void }

/** The schema of each kind this directory ships (apiVersion/kind -> model). */
const models: Record<string, (m: Manifest) => Validatable> = {
  'apps/v1/Deployment': (m) => new Deployment(m as never),
  'v1/Service': (m) => new Service(m as never),
  'v1/ConfigMap': (m) => new ConfigMap(m as never),
  'policy/v1/PodDisruptionBudget': (m) => new PodDisruptionBudget(m as never),
  'autoscaling/v2/HorizontalPodAutoscaler': (m) => new HorizontalPodAutoscaler(m as never)
}
function validate(m: Manifest): void {
  const model = models[`${m.apiVersion}/${m.kind}`]
  if (model === undefined) throw new Error(`no schema for ${m.apiVersion} ${m.kind}`)
  model(m).validate()
}

function readManifests(file: string): Manifest[] {
  return parseAllDocuments(readFileSync(join(dir, file), 'utf8')).map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0].message}`)
    return d.toJS() as Manifest
  }).filter((m) => m !== null)
}

const kustomization = parseDocument(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')).toJS() as {
  resources: string[]
  configMapGenerator: { name: string; files: string[] }[]
  images: { name: string; newName?: string; newTag: string }[]
}
const manifests = kustomization.resources.flatMap(readManifests)
const one = <T>(kind: string): T => {
  const found = manifests.filter((m) => m.kind === kind)
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`)
  return found[0] as T
}
const deployment = one<Deployment>('Deployment')
const service = one<Service>('Service')
const pdb = one<PodDisruptionBudget>('PodDisruptionBudget')
const hpa = one<HorizontalPodAutoscaler>('HorizontalPodAutoscaler')
const pod = deployment.spec!.template.spec!
const container = pod.containers.find((c) => c.name === 'switchyard') as IContainer
const generator = kustomization.configMapGenerator.find((g) => g.name === 'switchyard-config')!
const configFile = generator.files[0]
const configText = readFileSync(join(dir, configFile), 'utf8')

/** The container's environment as the kubelet gives it: literal values; an optional Secret that does not exist gives nothing. */
const podEnv: NodeJS.ProcessEnv = Object.fromEntries((container.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value]))
const config = parseConfig(configText, configFile, podEnv)

const portNamed = (p: number | string): IContainerPort => {
  const found = (container.ports ?? []).find((x) => x.name === p || x.containerPort === p)
  if (found === undefined) throw new Error(`no container port ${p}`)
  return found
}

t.test('kustomization: every manifest listed, every listed file exists, the image is this version', async (t) => {
  const yamlFiles = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && f !== configFile).sort()
  t.same([...kustomization.resources].sort(), yamlFiles, 'resources are exactly the manifests in the directory')
  t.same(kustomization.configMapGenerator.flatMap((g) => g.files), ['upstreams.yaml'])
  t.same(manifests.map((m) => m.kind).sort(), ['Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Service'])
  const image = kustomization.images.find((i) => i.name === container.image)
  t.ok(image, 'the Deployment\'s image is the one the kustomization pins')
  t.equal(image?.newTag, pkg.version, 'tagged with package.json\'s version')
})

t.test('every manifest and the generated ConfigMap pass the Kubernetes API schemas', async (t) => {
  for (const m of manifests) t.doesNotThrow(() => validate(m), `${m.kind} ${m.metadata?.name}`)
  t.doesNotThrow(() => validate({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: generator.name }, data: { [configFile]: configText } }), 'ConfigMap')
  // The schemas do reject: the same Deployment with a port given as text.
  const broken = structuredClone(deployment) as unknown as { spec: { template: { spec: { containers: { ports: { containerPort: unknown }[] }[] } } } }
  broken.spec.template.spec.containers[0].ports[0].containerPort = '8080'
  t.throws(() => validate(broken as unknown as Manifest), /containerPort must be integer/)
  t.throws(() => validate({ apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'x' }, spec: { maxUnavailable: true } }))
})

t.test('the ConfigMap\'s upstreams.yaml is a valid Switchyard config in the pod\'s environment', async (t) => {
  t.equal(config.workers, 1, 'one process per pod; replicas scale out')
  t.equal(config.cache.store, 'redis', 'replicas share one cache')
  t.equal(config.cache.redis.url, podEnv.REDIS_URL)
  t.equal(config.admin.token ?? '', '', 'no token until the optional Secret exists (then mutating admin calls need it)')
  const withToken = parseConfig(configText, configFile, { ...podEnv, ADMIN_TOKEN: 's3cret' })
  t.equal(withToken.admin.token, 's3cret', 'the Secret\'s token reaches admin.token')
  t.throws(() => parseConfig(configText, configFile, {}), /REDIS_URL is not set/, 'without the Deployment\'s env it is refused')
})

t.test('probes, ports and the config path agree with the config', async (t) => {
  t.equal(container.args?.[0], 'start')
  t.equal(container.args?.[1], '--config')
  const mount = container.volumeMounts!.find((v) => pod.volumes!.find((vol) => vol.name === v.name)?.configMap?.name === generator.name)
  t.ok(mount?.readOnly, 'the ConfigMap is mounted read-only')
  t.equal(container.args?.[2], `${mount!.mountPath}/${configFile}`, '--config is the mounted upstreams.yaml')
  t.equal(container.args?.length, 3)

  t.equal(config.admin.host, '0.0.0.0', 'the admin listener is on the pod IP (the kubelet probes it there)')
  for (const [probe, path] of [['startupProbe', '/healthz'], ['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
    const get = container[probe]?.httpGet
    t.equal(get?.path, path, `${probe} asks ${path}`)
    t.equal(portNamed(get!.port).containerPort, config.admin.port, `${probe} on the admin listener's port`)
  }
  t.equal(portNamed('admin').containerPort, config.admin.port)
  t.same(config.listen.map((l) => l.port), [portNamed('http').containerPort], 'the http port is the proxy listener')
  t.equal(config.listen[0].host, '0.0.0.0')
  t.same(service.spec!.ports!.map((p) => portNamed(p.targetPort!).containerPort), [config.listen[0].port], 'the Service sends to the proxy listener, never the admin port')
})

t.test('shutdown: preStop pause, then the drain, inside the grace period', async (t) => {
  const command = container.lifecycle?.preStop?.exec?.command ?? []
  t.equal(command[0], 'sleep', 'preStop pauses while the endpoint removal spreads (coreutils sleep is in the Debian slim image)')
  const pause = Number(command[1])
  t.ok(pause >= 3 && pause <= 15, `pause ${pause} s`)
  const grace = pod.terminationGracePeriodSeconds ?? 30
  t.ok(grace > pause + config.limits.shutdown_timeout_ms / 1000, `grace ${grace} s > preStop ${pause} s + shutdown_timeout_ms ${config.limits.shutdown_timeout_ms} ms`)
  t.equal(deployment.spec!.strategy?.rollingUpdate?.maxUnavailable, 0, 'a rollout never goes below the current count')
})

t.test('security and resources', async (t) => {
  t.equal(pod.securityContext?.runAsNonRoot, true)
  t.equal(pod.securityContext?.runAsUser, 1000, 'the image\'s node user, numerically (runAsNonRoot cannot check a user name)')
  t.equal(pod.automountServiceAccountToken, false, 'the proxy never talks to the API server')
  const sc = container.securityContext
  t.equal(sc?.readOnlyRootFilesystem, true)
  t.equal(sc?.allowPrivilegeEscalation, false)
  t.same(sc?.capabilities?.drop, ['ALL'])
  t.notOk(sc?.capabilities?.add, 'no capability added (ports are above 1024)')
  t.ok(config.listen.every((l) => l.port > 1024) && config.admin.port > 1024)
  t.ok(container.resources?.requests?.cpu, 'a CPU request: the HPA\'s utilization is relative to it')
  t.ok(container.resources?.limits?.memory)
})

t.test('Service, PodDisruptionBudget and HorizontalPodAutoscaler select the Deployment\'s pods', async (t) => {
  const labels = deployment.spec!.template.metadata!.labels!
  const selects = (sel: Record<string, string>): boolean => Object.entries(sel).every(([k, v]) => labels[k] === v)
  t.ok(selects(deployment.spec!.selector.matchLabels!), 'Deployment')
  t.ok(selects(service.spec!.selector!), 'Service')
  t.ok(selects(pdb.spec!.selector!.matchLabels!), 'PodDisruptionBudget')
  t.same(hpa.spec!.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata!.name })
  t.ok(hpa.spec!.minReplicas! >= 2, 'at least two pods')
  t.equal(deployment.spec!.replicas, undefined, 'the HPA owns the count (an apply would otherwise reset it)')
  t.equal(pdb.spec!.maxUnavailable, 1)
  t.equal(hpa.spec!.metrics?.[0].resource?.name, 'cpu')
})

let kubectl = false
try { await run('kubectl', ['version', '--client']); kubectl = true } catch { kubectl = false }
t.test('kubectl kustomize builds it, and the result passes the schemas', { skip: kubectl ? false : 'kubectl is not installed' }, async (t) => {
  const { stdout } = await run('kubectl', ['kustomize', dir])
  const built = parseAllDocuments(stdout).map((d) => d.toJS() as Manifest)
  t.same(built.map((m) => m.kind).sort(), ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Service'])
  for (const m of built) t.doesNotThrow(() => validate(m), `${m.kind} ${m.metadata?.name}`)
  const cm = built.find((m) => m.kind === 'ConfigMap')!
  t.match(cm.metadata!.name!, /^switchyard-config-[a-z0-9]{10}$/, 'the ConfigMap name carries a content hash: a config change rolls the pods')
  t.equal((cm as { data: Record<string, string> }).data[configFile], configText)
  const d = built.find((m) => m.kind === 'Deployment') as unknown as Deployment
  t.equal(d.spec!.template.spec!.volumes!.find((v) => v.configMap !== undefined)?.configMap?.name, cm.metadata!.name, 'the Deployment mounts that ConfigMap')
  t.equal(d.spec!.template.spec!.containers[0].image, `${kustomization.images[0].newName ?? 'switchyard'}:${pkg.version}`)
  for (const m of built) t.equal(m.metadata?.labels?.['app.kubernetes.io/part-of'], 'switchyard', `${m.kind} labelled`)
})

t.test('the pod\'s config runs: /healthz and /readyz answer 200 with no upstream and no Redis reachable, SIGTERM drains', async (t) => {
  // Only the ports and host change (to free ones on loopback); everything else is the ConfigMap's file.
  const doc = parseDocument(configText)
  const [http, admin, redis] = [await deadPort(), await deadPort(), await deadPort()]
  doc.setIn(['listen', 'host'], '127.0.0.1')
  doc.setIn(['listen', 'port'], http)
  doc.setIn(['admin', 'port'], admin)
  doc.setIn(['limits', 'shutdown_timeout_ms'], '2s')
  const tmp = mkdtempSync(join(tmpdir(), 'sy-k8s-'))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  const file = join(tmp, configFile)
  writeFileSync(file, doc.toString())
  const env = { ...process.env, ...podEnv, SWITCHYARD_ADMIN_HOST: '127.0.0.1', REDIS_URL: `redis://127.0.0.1:${redis}`, LOG_LEVEL: 'warn' }
  const proc = spawn(process.execPath, [CLI, ...container.args!.slice(0, 2), file], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGKILL') })
  const status = async (path: string): Promise<number> => { try { return (await fetchText(`http://127.0.0.1:${admin}${path}`)).status } catch { return 0 } }
  await waitFor(async () => (await status('/readyz')) === 200 || proc.exitCode !== null, 15000, '/readyz')
  t.equal(proc.exitCode, null, `running ${stderr}`)
  t.equal(await status('/healthz'), 200, 'liveness')
  t.equal(await status('/readyz'), 200, 'readiness does not wait for the upstreams or Redis')
  const res = await fetchText(`http://127.0.0.1:${http}/`)
  t.ok(res.status === 502 || res.status === 503, `an unresolvable upstream is a 502 or (once its health check failed) 503, not a crash: ${res.status}`)
  proc.kill('SIGTERM')
  t.equal(await exited, 0, 'SIGTERM: drained and exited 0')
})
