/**
 * The attempt loop against real upstreams, with a fake clock for deadlines: retries, the retry
 * budget, member exclusion and exactly one record per try.
 */
import t from 'tap'
import type { ServerResponse } from 'node:http'
import { Registry } from 'prom-client'
import { parseConfig } from '../../src/config/load.js'
import { createProxyMetrics } from '../../src/metrics/proxy-metrics.js'
import { runExchange, type ResponseSink, type UpstreamResponse } from '../../src/routing/attempt-loop.js'
import { routeRequest, type RoutedRequest } from '../../src/routing/request-edge.js'
import { buildRuntime, type Runtime } from '../../src/routing/runtime.js'
import { forwardRequest } from '../../src/routing/upstream-request.js'
import { UpstreamDispatcher } from '../../src/upstreams/dispatcher.js'
import type { ProxyError } from '../../src/errors.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import { deadPort, startUpstream, type Upstream } from '../fixtures/upstream.js'
import { waitFor } from '../fixtures/proxy.js'

/** A sink that records what the loop hands it. */
class Recorder implements ResponseSink {
  status = 0
  member = ''
  body = ''
  error: ProxyError | undefined
  ended = false
  aborted = false
  readonly done: Promise<void>
  private resolve: () => void = () => {}
  constructor() { this.done = new Promise((r) => { this.resolve = r }) }
  onResponseStart(res: UpstreamResponse): void { this.status = res.status; this.member = res.member.name }
  onResponseData(chunk: Buffer): boolean { this.body += chunk.toString(); return true }
  onResponseEnd(): void { this.ended = true; this.resolve() }
  onResponseError(error: ProxyError): void { this.error = error; this.resolve() }
  onAbort(): void { this.aborted = true; this.resolve() }
}

interface Setup { rt: Runtime; metrics: ReturnType<typeof createProxyMetrics>; registry: Registry; dispatcher: UpstreamDispatcher; clock: FakeClock }

function setup(t: { teardown(fn: () => unknown): void }, yaml: string): Setup {
  const registry = new Registry()
  const metrics = createProxyMetrics(registry)
  const dispatcher = new UpstreamDispatcher()
  const rt = buildRuntime(parseConfig(yaml, 'test.yaml', {}), dispatcher)
  dispatcher.commit()
  t.teardown(() => dispatcher.close())
  return { rt, metrics, registry, dispatcher, clock: new FakeClock() }
}

function routed(rt: Runtime, method = 'GET', path = '/x'): RoutedRequest {
  const r = routeRequest({ method, url: path, headers: { host: 'a.test' }, rawHeaders: ['Host', 'a.test'], versionMajor: 1, versionMinor: 1, peer: '127.0.0.1', scheme: 'http', id: 'req-1', start: performance.now() }, rt)
  if (!r.ok) throw new Error(`not routed: ${r.error.name}`)
  return r.routed
}

function run(s: Setup, req: RoutedRequest, body: Buffer | null = null): { sink: Recorder; flow: ReturnType<typeof runExchange> } {
  const sink = new Recorder()
  const flow = runExchange({ dispatch: (o, opts, h) => s.dispatcher.dispatch(o, opts, h), metrics: s.metrics, clock: s.clock }, forwardRequest(req, body, true), sink)
  return { sink, flow }
}

async function metric(s: Setup, name: string, labels: string): Promise<number> {
  const m = (await s.registry.getSingleMetricAsString(name)).split('\n').find((l) => l.startsWith(`${name}{${labels}}`))
  return m === undefined ? 0 : Number(m.split(' ').at(-1))
}

/** An upstream that answers 503 only when the test says so. */
async function heldUpstream(name: string): Promise<Upstream & { held: ServerResponse[] }> {
  const held: ServerResponse[] = []
  const up = await startUpstream(name, (_req, res) => { held.push(res) })
  return Object.assign(up, { held })
}

t.test('a retryable status goes to the other member; each try is recorded once', async (t) => {
  const a = await startUpstream('a', (_req, res) => { res.writeHead(503).end('busy') })
  const b = await startUpstream('b', (_req, res) => { res.end('fine') })
  t.teardown(async () => { await a.close(); await b.close() })
  const s = setup(t, `
pools: { web: { members: [{ url: "${a.url}", name: a }, { url: "${b.url}", name: b }], outlier: { consecutive_failures: 0 } } }
routes: [{ name: r, match: {}, pool: web }]
`)
  const { sink } = run(s, routed(s.rt))
  await sink.done
  t.equal(sink.status, 200)
  t.equal(sink.body, 'fine')
  t.equal(sink.member, 'b')
  t.equal(a.hits + b.hits, 2, 'two tries in all')
  const [ma, mb] = s.rt.pools.get('web')!.members
  t.same([ma.failures, mb.failures], [1, 0])
  t.same([ma.inFlight, mb.inFlight], [0, 0], 'both tries released their member')
  t.equal(await metric(s, 'switchyard_upstream_errors_total', 'pool="web",member="a",kind="http_5xx"'), 1)
  t.equal(await metric(s, 'switchyard_retries_total', 'route="r",pool="web",reason="status_503"'), 1)
})

t.test('no retry once the route deadline passed: 504, and no other member is tried', async (t) => {
  const a = await heldUpstream('a')
  const b = await startUpstream('b', (_req, res) => { res.end('fine') })
  t.teardown(async () => { await a.close(); await b.close() })
  const s = setup(t, `
pools: { web: { balancer: round_robin, members: [{ url: "${a.url}", name: a }, { url: "${b.url}", name: b }] } }
routes: [{ name: r, match: {}, pool: web, timeout_ms: 1000 }]
`)
  const { sink } = run(s, routed(s.rt))
  await waitFor(() => a.held.length === 1, 5000, 'the first try to reach member a')
  await s.clock.advance(1500)
  a.held[0].writeHead(503).end('late and busy')
  await sink.done
  t.equal(sink.error?.status, 504, 'the deadline passed: 504')
  t.equal(sink.status, 0, 'the late answer is not relayed')
  t.equal(b.hits, 0, 'no second try')
  t.equal(await metric(s, 'switchyard_retries_total', 'route="r",pool="web",reason="status_503"'), 0)
})

t.test('an exhausted retry budget stops retries and says so', async (t) => {
  const dead = await deadPort()
  const b = await startUpstream('b')
  t.teardown(() => b.close())
  const s = setup(t, `
pools: { web: { balancer: round_robin, retry_budget: { percent: 0, min_per_second: 0 }, members: [{ url: "http://127.0.0.1:${dead}", name: dead }, { url: "${b.url}", name: b }] } }
routes: [{ name: r, match: {}, pool: web }]
`)
  const { sink } = run(s, routed(s.rt))
  await sink.done
  t.equal(sink.error?.name, 'refused')
  t.equal(sink.error?.status, 502)
  t.equal(b.hits, 0)
  t.equal(await metric(s, 'switchyard_retry_budget_exhausted_total', 'pool="web"'), 1)
  t.equal(await metric(s, 'switchyard_upstream_errors_total', 'pool="web",member="dead",kind="refused"'), 1, 'the failed try is still recorded, once')
})

t.test('a POST is never retried; its failure is recorded once', async (t) => {
  const dead = await deadPort()
  const b = await startUpstream('b')
  t.teardown(() => b.close())
  const s = setup(t, `
pools: { web: { balancer: round_robin, members: [{ url: "http://127.0.0.1:${dead}", name: dead }, { url: "${b.url}", name: b }] } }
routes: [{ name: r, match: {}, pool: web }]
`)
  const { sink } = run(s, routed(s.rt, 'POST'), Buffer.from('x'))
  await sink.done
  t.equal(sink.error?.name, 'refused')
  const dm = s.rt.pools.get('web')!.members[0]
  t.equal(dm.failures, 1)
  t.equal(dm.consecutiveFailures, 1, 'outlier detection saw it once')
  t.equal(await metric(s, 'switchyard_upstream_errors_total', 'pool="web",member="dead",kind="refused"'), 1)
})

t.test('aborting an exchange releases its member without a failure', async (t) => {
  const a = await heldUpstream('a')
  t.teardown(() => a.close())
  const s = setup(t, `
pools: { web: { members: [{ url: "${a.url}", name: a }], max_requests: 1 } }
routes: [{ name: r, match: {}, pool: web }]
`)
  const pool = s.rt.pools.get('web')!
  const { sink, flow } = run(s, routed(s.rt))
  await waitFor(() => a.held.length === 1, 5000, 'the try to reach the member')
  t.equal(pool.admission.inFlight, 1)
  flow.abort()
  await sink.done
  t.ok(sink.aborted)
  t.equal(pool.members[0].inFlight, 0)
  t.equal(pool.members[0].failures, 0, 'a client that left is not the member\'s fault')
  t.equal(pool.admission.inFlight, 0, 'the max_requests slot is free again')
})

t.test('the route deadline covers the whole exchange: a member that never answers gets 504 at the deadline', async (t) => {
  const a = await heldUpstream('a')
  t.teardown(() => a.close())
  const s = setup(t, `
pools: { web: { members: [{ url: "${a.url}", name: a }], timeouts: { request_ms: 0 } } }
routes: [{ name: r, match: {}, pool: web, timeout_ms: 1000 }]
`)
  const { sink } = run(s, routed(s.rt))
  await waitFor(() => a.held.length === 1, 5000, 'the try to reach the member')
  await s.clock.advance(999)
  t.equal(sink.error, undefined, 'not before the deadline')
  await s.clock.advance(2)
  await sink.done
  t.equal(sink.error?.status, 504)
  const m = s.rt.pools.get('web')!.members[0]
  t.equal(m.failures, 1, 'the member is charged with the timeout once')
  t.equal(m.inFlight, 0)
  t.equal(await metric(s, 'switchyard_upstream_errors_total', 'pool="web",member="a",kind="timeout"'), 1)
})
