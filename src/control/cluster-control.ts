/**
 * `workers: N`: the primary's Control. It forks the workers (they share the listening port
 * through node:cluster), hands each the validated config over IPC, replaces one that dies or
 * drains, and fans reloads, purges and pool views out to them. The admin listener and the
 * sidecars run in the primary, over this Control, exactly as they run over LocalControl.
 */
import cluster, { type Worker } from 'node:cluster'
import { AggregatorRegistry, Counter, Gauge, type Registry } from 'prom-client'
import type { Logger } from 'pino'
import type { Config } from '../config/schema.js'
import type { PurgeResult } from '../cache/purge.js'
import type { Supervisor } from '../sidecars/supervisor.js'
import { realClock, type Clock } from '../clock.js'
import { NO_CACHE, type AdminAnswer, type Control, type ReloadAnswer } from './control.js'
import { MSG, type DrainRequest, type Message, type StepResult } from './cluster-protocol.js'
import { DrainIntents } from '../admin/drain-intents.js'
import type { SplitRequest } from '../admin/split-admin.js'
import { ReloadHistory } from '../admin/reload-history.js'
import { configParts, type StatusSnapshot } from '../admin/status-snapshot.js'
import { mergeSnapshots } from '../admin/status-merge.js'
import { StatusWindow } from '../admin/status-window.js'
import { StartupError, type Resources } from './lifecycle.js'
import { Reloader, type PreparedReload } from './reloader.js'

interface WorkerState {
  worker: Worker
  pid: number
  /** Version of the config it runs (-1 until it asked for one). */
  version: number
  listening: boolean
  ready: boolean
  draining: boolean
  /** A replacement was forked for it already (it announced its drain). */
  replaced: boolean
  /** Why it could not start, as it told us. */
  failure: string | undefined
}

export interface ClusterOptions {
  size: number
  config: Config
  configPath: string
  logger: Logger
  /** The primary's own registry (worker and sidecar metrics are added to it on /metrics). */
  registry: Registry
  supervisor: Supervisor | undefined
  /** The process's close list: shutdown() closes it after the workers are gone. */
  resources: Resources
  clock?: Clock
}

/** Backoff between replacing workers that keep crashing: 100 ms doubling to 5 s. */
const CRASH_BACKOFF = { baseMs: 100, maxMs: 5000 }
/** Beyond the workers' own drain deadline, time for their close lists before SIGKILL. */
const WORKER_CLOSE_GRACE_MS = 5000

export class ClusterControl implements Control {
  readonly contentType: string
  readonly reloader: Reloader
  private readonly workers = new Map<Worker, WorkerState>()
  private readonly aggregator = new AggregatorRegistry()
  private readonly restarts: Counter
  private readonly clock: Clock
  private readonly log: Logger
  private config: Config
  private version = 0
  private stopping = false
  private everReady = false
  private crashes = 0
  private nextId = 1
  private startup: { resolve: () => void; reject: (err: Error) => void } | undefined
  private started = false
  private stopped: Promise<void> | undefined
  /** Pending replacements of crashed workers (cleared on stop). */
  private readonly respawns = new Set<unknown>()
  /** Drain calls made by hand: every new worker drains those members before it serves. */
  private readonly drains = new DrainIntents()
  private readonly history = new ReloadHistory()
  private readonly window = new StatusWindow()

  constructor(private readonly opts: ClusterOptions) {
    this.contentType = opts.registry.contentType
    this.clock = opts.clock ?? realClock
    this.log = opts.logger
    this.config = opts.config
    this.restarts = new Counter({ name: 'switchyard_worker_restarts_total', help: 'Workers replaced after they died.', registers: [opts.registry] })
    const workers = this.workers
    new Gauge({
      name: 'switchyard_workers',
      help: 'Proxy worker processes running.',
      registers: [opts.registry],
      collect() { this.set([...workers.values()].filter((w) => !w.draining).length) }
    })
    this.reloader = new Reloader({ configPath: opts.configPath, running: opts.config, target: { prepare: (c) => this.prepare(c) }, supervisor: opts.supervisor, log: opts.logger })
    this.reloader.registerMetrics(opts.registry)
  }

  /** Forks the workers; resolves once every one listens, rejects when one cannot start. */
  async start(): Promise<void> {
    this.opts.resources.add('workers', () => this.stopWorkers())
    const all = new Promise<void>((resolve, reject) => { this.startup = { resolve, reject } })
    for (let i = 0; i < this.opts.size; i++) this.fork()
    await all
    this.started = true
  }

  async metrics(): Promise<string> {
    const [workers, own, sidecars] = await Promise.all([
      this.aggregator.clusterMetrics().catch((err: Error) => { this.log.warn({ err: err.message }, 'worker metrics unavailable'); return '' }),
      this.opts.registry.metrics(),
      this.opts.supervisor?.collectMetrics() ?? Promise.resolve('')
    ])
    return [workers, own, sidecars].filter((s) => s !== '').join('\n')
  }

  async pools(): Promise<Record<string, unknown>> {
    const views = await Promise.all(this.serving().map(async (st) => ({ pid: st.pid, ...(await this.ask(st, MSG.pools, undefined, 2000) as Record<string, unknown>) })))
    return { pools: (views[0] as { pools?: unknown } | undefined)?.pools ?? {}, workers: views }
  }

  sidecars(): Record<string, unknown>[] {
    return this.opts.supervisor?.list() ?? []
  }

  /** Every worker ready at startup; afterwards at least one serving (a drained one is being replaced). */
  ready(): boolean {
    return !this.stopping && this.everReady && this.serving().length > 0 && (this.opts.supervisor?.allSpawned() ?? true)
  }

  async reload(config?: Config): Promise<ReloadAnswer> {
    const answer = await this.history.record(() => this.reloader.reload(config))
    if (answer.ok) {
      // A drain call that landed while the workers prepared the reload is applied again.
      this.drains.prune(this.config)
      const intents = this.drains.all()
      if (intents.length > 0) await Promise.all(this.withConfig().flatMap((st) => intents.map((i) => this.ask(st, MSG.drain, i satisfies DrainRequest))))
    }
    return answer
  }

  /**
   * Drains a member on every worker (or puts it back), and remembers it so a worker started
   * later (a replacement) drains it before it serves.
   */
  async drain(pool: string, member: string, drained: boolean): Promise<AdminAnswer> {
    const request: DrainRequest = { pool, member, drained }
    const serving = this.withConfig()
    // A worker still starting has its config (and the drains as they were then): its channel
    // holds this call until its app exists. Its answer is not waited for.
    for (const st of this.workers.values()) {
      if (st.version >= 0 && !st.draining && !serving.includes(st)) void this.ask(st, MSG.drain, request, 60000)
    }
    const results = await Promise.all(serving.map((st) => this.ask(st, MSG.drain, request) as Promise<AdminAnswer | { ok: false; error: string }>))
    const answered = results.filter((r): r is AdminAnswer => typeof r === 'object' && r !== null && 'status' in r)
    const first = answered[0]
    if (first === undefined) return { status: 503, body: { error: 'no worker answered the drain' } }
    if (first.status !== 200) return first
    this.drains.set(pool, member, drained)
    const inFlight = answered.reduce((n, r) => n + (typeof r.body.in_flight === 'number' ? r.body.in_flight : 0), 0)
    const changed = answered.some((r) => r.body.changed === true)
    return { status: 200, body: { ...first.body, changed, in_flight: inFlight, workers: answered.length, ...(answered.length < results.length ? { unanswered: results.length - answered.length } : {}) } }
  }

  /**
   * Each worker's splits: a guardrail judges the traffic its worker saw, so rollbacks are per
   * worker; `splits` is the first worker's view.
   */
  async splits(): Promise<Record<string, unknown>> {
    const views = await Promise.all(this.serving().map(async (st) => ({ pid: st.pid, ...(await this.ask(st, MSG.splits, undefined, 2000) as Record<string, unknown>) })))
    return { splits: (views[0] as { splits?: unknown } | undefined)?.splits ?? [], workers: views }
  }

  /** A reset or promotion on every worker serving now (a worker started later starts afresh). */
  async split(request: SplitRequest): Promise<AdminAnswer> {
    const results = await Promise.all(this.withConfig().map((st) => this.ask(st, MSG.split, request) as Promise<AdminAnswer | { ok: false; error: string }>))
    const answered = results.filter((r): r is AdminAnswer => typeof r === 'object' && r !== null && 'status' in r)
    const first = answered[0]
    if (first === undefined) return { status: 503, body: { error: 'no worker answered the split call' } }
    if (first.status !== 200) return first
    return { status: 200, body: { ...first.body, workers: answered.length, ...(answered.length < results.length ? { unanswered: results.length - answered.length } : {}) } }
  }

  /** The workers' snapshots added up, with the primary's view of the config. */
  async snapshot(): Promise<StatusSnapshot | undefined> {
    const answers = await Promise.all(this.withConfig().map((st) => this.ask(st, MSG.status, undefined, 2000)))
    const snapshots = answers.filter((a): a is StatusSnapshot => typeof a === 'object' && a !== null && 'pools' in a)
    return mergeSnapshots(snapshots)
  }

  async status(): Promise<Record<string, unknown>> {
    const snap = await this.snapshot()
    const view = snap === undefined
      ? { generated_at: new Date().toISOString(), window_s: null, ...configParts(this.config), pools: [], splits: [], cache: null, error: 'no worker answered' }
      : this.window.view(snap)
    return { mode: 'workers', workers: this.serving().length, ready: this.ready(), ...view, sidecars: this.sidecars(), reloads: this.history.list() }
  }

  /** Each worker purges its own store (a memory store is per worker; Redis is shared and idempotent). */
  async purge(request: unknown): Promise<PurgeResult> {
    const results = await Promise.all(this.withConfig().map((st) => this.ask(st, MSG.purge, request) as Promise<PurgeResult | { ok: false; error: string }>))
    const answered = results.filter((r): r is PurgeResult => typeof r === 'object' && r !== null && 'status' in r)
    const first = answered[0]
    if (first === undefined) return { status: 503, body: { error: 'no worker answered the purge' } }
    if (first.status === NO_CACHE.status) return NO_CACHE
    if (first.status !== 200) return first
    const purged = answered.reduce((n, r) => n + (r.status === 200 && typeof r.body.purged === 'number' ? r.body.purged : 0), 0)
    return { status: 200, body: { ...first.body, purged, workers: answered.length } }
  }

  shutdown(reason: string): Promise<void> {
    this.stopped ??= (async () => {
      this.log.info({ reason, workers: this.workers.size }, 'shutting down workers')
      await this.opts.resources.closeAll()
      this.log.info('stopped')
    })()
    return this.stopped
  }

  /** Workers with an app, not draining and ready. */
  private serving(): WorkerState[] {
    return [...this.workers.values()].filter((w) => w.ready && !w.draining)
  }

  /** Workers that listen with the app built from their config, not draining. */
  private withConfig(): WorkerState[] {
    return [...this.workers.values()].filter((w) => w.version >= 0 && w.listening && !w.draining)
  }

  private fork(): void {
    const worker = cluster.fork({ SWITCHYARD_WORKER: '1' })
    const st: WorkerState = { worker, pid: worker.process.pid ?? 0, version: -1, listening: false, ready: false, draining: false, replaced: false, failure: undefined }
    this.workers.set(worker, st)
    worker.on('message', (m: Message) => this.onMessage(st, m))
    worker.on('error', (err) => this.log.debug({ pid: st.pid, err: err.message }, 'worker channel error'))
    worker.once('listening', () => {
      st.listening = true
      if (this.startup !== undefined && [...this.workers.values()].filter((w) => w.listening).length >= this.opts.size) {
        this.startup.resolve()
        this.startup = undefined
      }
    })
    worker.once('exit', (code, signal) => this.onExit(st, code, signal))
  }

  private onMessage(st: WorkerState, m: Message): void {
    switch (m?.type) {
      case MSG.hello:
        st.version = this.version
        this.send(st, { type: MSG.config, config: this.config, version: this.version })
        // Held by the worker's channel until its app exists, applied before it serves a request.
        for (const i of this.drains.drained()) void this.ask(st, MSG.drain, i satisfies DrainRequest, 30000)
        break
      case MSG.failed:
        st.failure = m.error
        break
      case MSG.ready:
        st.ready = true
        this.crashes = 0
        if (!this.everReady && this.serving().length >= this.opts.size) this.everReady = true
        break
      case MSG.draining:
        st.draining = true
        if (!this.stopping && !st.replaced) {
          st.replaced = true
          this.log.info({ pid: st.pid }, 'worker draining; starting its replacement')
          this.fork()
        }
        break
    }
  }

  private onExit(st: WorkerState, code: number | null, signal: string | null): void {
    this.workers.delete(st.worker)
    if (this.stopping) return
    if (!this.started && !st.listening) {
      // A worker that cannot start (port taken, bad address) will not start on a retry either.
      this.startup?.reject(new StartupError(st.failure ?? `worker ${st.pid} exited during startup (${signal ?? `code ${code}`})`))
      this.startup = undefined
      return
    }
    if (st.draining || signal === 'SIGTERM') {
      // A drained worker (SIGTERM to it alone): replaced at once, not counted as a crash.
      this.log.info({ pid: st.pid }, 'worker exited after draining')
      if (!st.replaced) this.fork()
      return
    }
    this.crashes++
    const delay = Math.min(CRASH_BACKOFF.maxMs, CRASH_BACKOFF.baseMs * 2 ** (this.crashes - 1))
    this.log.error({ pid: st.pid, code, signal, restart_in_ms: delay, failure: st.failure }, 'worker died; replacing it')
    this.restarts.inc()
    const timer = this.clock.setTimeout(() => {
      this.respawns.delete(timer)
      if (!this.stopping) this.fork()
    }, delay)
    this.respawns.add(timer)
  }

  /**
   * Two-phase reload: every worker builds the new runtime; only when all could, all switch.
   * A worker that could not prepare is reported and nobody switches.
   */
  private async prepare(config: Config): Promise<PreparedReload> {
    const targets = this.withConfig()
    const answers = await Promise.all(targets.map((st) => this.ask(st, MSG.prepare, config, 10000) as Promise<StepResult>))
    const failed = targets.flatMap((st, i) => answers[i].ok ? [] : [`worker ${st.pid}: ${(answers[i] as { error: string }).error}`])
    if (failed.length > 0) {
      await Promise.all(targets.filter((_, i) => answers[i].ok).map((st) => this.ask(st, MSG.abort)))
      throw new Error(`${failed.join('; ')}; no worker switched`)
    }
    return {
      commit: async () => {
        this.config = config
        const version = ++this.version
        const results = await Promise.all(targets.map((st) => this.ask(st, MSG.commit) as Promise<StepResult>))
        const rebuilt = new Set<string>()
        const bad: string[] = []
        targets.forEach((st, i) => {
          const r = results[i]
          if (r.ok) { st.version = version; for (const o of r.rebuilt ?? []) rebuilt.add(o) } else bad.push(`worker ${st.pid}: ${r.error}`)
        })
        this.catchUp()
        if (bad.length > 0) throw new Error(`${bad.join('; ')}; the other workers switched`)
        return { rebuilt: [...rebuilt], workers: targets.length }
      },
      abort: async () => { await Promise.all(targets.map((st) => this.ask(st, MSG.abort))) }
    }
  }

  /**
   * Workers that received an older config while a reload was in progress, or were still
   * starting with it, get the current one (their channel holds it until their app exists).
   */
  private catchUp(): void {
    for (const st of this.workers.values()) {
      if (st.version < 0 || st.draining) continue
      if (st.version >= this.version) continue
      const version = this.version
      void (this.ask(st, MSG.apply, this.config, 10000) as Promise<StepResult>).then((r) => {
        if (r.ok) st.version = Math.max(st.version, version)
        else this.log.error({ pid: st.pid, error: r.error }, 'worker could not apply the current config')
      })
    }
  }

  private send(st: WorkerState, m: Message): boolean {
    if (!st.worker.isConnected()) return false
    try {
      st.worker.send(m)
      return true
    } catch {
      return false
    }
  }

  private ask(st: WorkerState, type: string, payload?: unknown, timeoutMs = 5000): Promise<unknown> {
    return new Promise((resolve) => {
      const id = this.nextId++
      const done = (v: unknown): void => {
        this.clock.clearTimeout(t)
        st.worker.off('message', onMsg)
        st.worker.off('exit', onExit)
        resolve(v)
      }
      const onMsg = (m: Message): void => { if (m?.type === type && m.id === id) done(m.result) }
      const onExit = (): void => done({ ok: false, error: `worker ${st.pid} exited` })
      const t = this.clock.setTimeout(() => done({ ok: false, error: `worker ${st.pid} did not answer within ${timeoutMs} ms` }), timeoutMs)
      st.worker.on('message', onMsg)
      st.worker.once('exit', onExit)
      if (!this.send(st, { type, id, payload })) done({ ok: false, error: `worker ${st.pid} is not connected` })
    })
  }

  /** SIGTERM every worker (each drains within limits.shutdown_timeout_ms); SIGKILL the late ones. */
  private async stopWorkers(): Promise<void> {
    this.stopping = true
    for (const timer of this.respawns) this.clock.clearTimeout(timer)
    this.respawns.clear()
    this.startup?.reject(new StartupError('stopped during startup'))
    this.startup = undefined
    const deadline = this.reloader.running.limits.shutdown_timeout_ms + WORKER_CLOSE_GRACE_MS
    await Promise.all([...this.workers.values()].map((st) => new Promise<void>((resolve) => {
      const w = st.worker
      if (w.process.exitCode !== null || w.process.signalCode !== null) return resolve()
      const killer = this.clock.setTimeout(() => {
        this.log.warn({ pid: st.pid }, 'worker did not stop in time; sending SIGKILL')
        w.process.kill('SIGKILL')
      }, deadline)
      w.once('exit', () => { this.clock.clearTimeout(killer); resolve() })
      w.process.kill('SIGTERM')
    })))
  }
}
