import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { AggregatorRegistry, Counter, Gauge, type Registry } from 'prom-client'
import type { Logger } from 'pino'
import type { SidecarConfig } from '../config/schema.js'
import { realClock, type Clock } from '../clock.js'
import { METRICS_REQUEST, type MetricsMessage } from './child-metrics.js'
import { relayOutput } from './child-output.js'

/** The CLI entry a `command: switchyard` sidecar runs (this package's own compiled CLI). */
export const CLI_ENTRY = fileURLToPath(new URL('../cli/main.js', import.meta.url))

type State = 'starting' | 'running' | 'backoff' | 'stopping' | 'stopped'

/** A run this long resets the backoff: the sidecar was healthy, the next crash is a new incident. */
export const STABLE_MS = 10000

/** Wait before the restart that follows the n-th quick failure in a row (n >= 1): base, 2 base, 4 base ... max. */
export function restartDelay(failuresInARow: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, failuresInARow - 1))
}

class Sidecar {
  state: State = 'stopped'
  child: ChildProcess | undefined
  restarts = 0
  failuresInARow = 0
  startedAt = 0
  lastExit: string | undefined
  timer: unknown
  exited: Promise<void> = Promise.resolve()
  /** Whether it has spawned at least once (readiness). */
  everSpawned = false
  /** Settles with undefined once the first spawn succeeded, or with why it failed. */
  readonly firstSpawn: Promise<string | undefined>
  settleFirst!: (failure: string | undefined) => void

  constructor(readonly spec: SidecarConfig, private readonly clock: Clock) {
    this.firstSpawn = new Promise((resolve) => { this.settleFirst = resolve })
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.spec.name,
      command: this.spec.command,
      args: this.spec.args,
      pid: this.child?.pid ?? null,
      state: this.state,
      restarts: this.restarts,
      uptime_s: this.state === 'running' ? Math.round((this.clock.now() - this.startedAt) / 100) / 10 : 0,
      last_exit: this.lastExit ?? null
    }
  }
}

/**
 * Starts sidecar processes, restarts one that dies with exponential backoff, forwards its
 * output to our log under its name (JSON lines as objects: child-output.ts), and on stop sends SIGTERM, then SIGKILL after the grace
 * period, so no child outlives the proxy.
 */
export class Supervisor {
  private readonly sidecars = new Map<string, Sidecar>()
  private readonly restartsTotal: Counter<'sidecar'>
  private stopping = false
  private started = false
  private nextMsgId = 1
  private readonly clock: Clock

  constructor(specs: readonly SidecarConfig[], private readonly log: Logger, registry: Registry, opts: { clock?: Clock } = {}) {
    this.clock = opts.clock ?? realClock
    for (const s of specs) if (s.enabled) this.sidecars.set(s.name, new Sidecar(s, this.clock))
    this.restartsTotal = new Counter({ name: 'switchyard_sidecar_restarts_total', help: 'Times each sidecar was restarted after it exited.', labelNames: ['sidecar'], registers: [registry] })
    const sidecars = this.sidecars
    new Gauge({
      name: 'switchyard_sidecar_up',
      help: 'Whether each sidecar process is running (1) or not (0).',
      labelNames: ['sidecar'],
      registers: [registry],
      collect() {
        for (const s of sidecars.values()) this.labels(s.spec.name).set(s.state === 'running' ? 1 : 0)
      }
    })
    for (const s of this.sidecars.values()) this.restartsTotal.labels(s.spec.name).inc(0)
  }

  /** Spawns every sidecar; spawned() tells when they all have. */
  start(): void {
    if (this.started) return
    this.started = true
    for (const s of this.sidecars.values()) this.launch(s)
  }

  /**
   * Resolves once every sidecar has spawned (its process exists: it may still be starting up),
   * rejects with the reason when one could not be spawned at all (ENOENT, EACCES): a startup
   * that cannot start its sidecars fails as a whole.
   */
  async spawned(): Promise<void> {
    const results = await Promise.all([...this.sidecars.values()].map(async (s) => [s.spec.name, await s.firstSpawn] as const))
    const failed = results.filter(([, why]) => why !== undefined)
    if (failed.length > 0) throw new Error(failed.map(([name, why]) => `sidecar ${name}: ${why}`).join('; '))
  }

  /** Whether every sidecar has spawned at least once. */
  allSpawned(): boolean {
    for (const s of this.sidecars.values()) if (!s.everSpawned) return false
    return true
  }

  /** Pids of the sidecar processes alive now. */
  pids(): number[] {
    return [...this.sidecars.values()].flatMap((s) => s.child?.pid === undefined ? [] : [s.child.pid])
  }

  /**
   * Applies a reloaded config: sidecars added start, removed ones stop, changed ones restart,
   * unchanged ones keep running untouched.
   */
  async update(specs: readonly SidecarConfig[]): Promise<{ started: string[]; stopped: string[] }> {
    const wanted = new Map(specs.filter((s) => s.enabled).map((s) => [s.name, s]))
    const stopped: string[] = []
    const started: string[] = []
    for (const [name, s] of this.sidecars) {
      const next = wanted.get(name)
      if (next === undefined || JSON.stringify(next) !== JSON.stringify(s.spec)) {
        await this.stopOne(s)
        this.sidecars.delete(name)
        stopped.push(name)
      }
    }
    for (const [name, spec] of wanted) {
      if (this.sidecars.has(name)) continue
      const s = new Sidecar(spec, this.clock)
      this.sidecars.set(name, s)
      this.restartsTotal.labels(name).inc(0)
      this.launch(s)
      started.push(name)
    }
    return { started, stopped }
  }

  list(): Record<string, unknown>[] {
    return [...this.sidecars.values()].map((s) => s.toJSON())
  }

  private launch(s: Sidecar): void {
    if (this.stopping) return
    const { spec } = s
    const own = spec.command === 'switchyard'
    const file = own ? process.execPath : spec.command
    const args = own ? [CLI_ENTRY, ...spec.args] : [...spec.args]
    s.state = 'starting'
    let child: ChildProcess
    try {
      child = spawn(file, args, {
        // Its output is a pipe to us, read line by line: a `switchyard` child logs JSON (which we
        // embed as objects) even when our own format is pretty, unless its env says otherwise.
        env: { ...process.env, SWITCHYARD_LOG_FORMAT: 'json', ...spec.env, SWITCHYARD_SIDECAR_NAME: spec.name },
        stdio: own ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe']
      })
    } catch (err) {
      this.onExit(s, `spawn failed: ${(err as Error).message}`)
      return
    }
    s.child = child
    s.exited = new Promise((resolve) => child.once('exit', () => resolve()))
    const log = this.log.child({ sidecar: spec.name })
    for (const [stream, name] of [[child.stdout, 'stdout'], [child.stderr, 'stderr']] as const) {
      if (stream !== null) relayOutput(stream, name, log)
    }
    child.once('spawn', () => {
      s.startedAt = this.clock.now()
      s.everSpawned = true
      s.settleFirst(undefined)
      log.info({ pid: child.pid }, 'sidecar started')
      // Unless a stop came first ('stopping'): its SIGTERM is on the way.
      if (s.state === 'starting') s.state = 'running'
    })
    child.on('error', (err) => {
      // ENOENT and friends: 'exit' may not follow, so treat it as an exit.
      if (child.pid === undefined) this.onExit(s, `spawn failed: ${err.message}`)
      else log.warn({ err }, 'sidecar process error')
    })
    child.once('exit', (code, signal) => this.onExit(s, signal !== null ? `signal ${signal}` : `exit code ${code}`))
  }

  private onExit(s: Sidecar, how: string): void {
    if (s.state === 'stopped' || s.state === 'backoff') return
    s.settleFirst(how)
    s.lastExit = how
    s.child = undefined
    if (this.stopping || s.state === 'stopping') {
      s.state = 'stopped'
      return
    }
    const ranMs = s.startedAt === 0 ? 0 : this.clock.now() - s.startedAt
    // After a stable run this exit starts a new incident: the first delay again.
    s.failuresInARow = ranMs >= STABLE_MS ? 1 : s.failuresInARow + 1
    s.startedAt = 0
    const { initial_delay_ms: base, max_delay_ms: max } = s.spec.restart
    const delay = restartDelay(s.failuresInARow, base, max)
    s.state = 'backoff'
    this.log.warn({ sidecar: s.spec.name, exit: how, restart_in_ms: delay, restarts: s.restarts + 1 }, 'sidecar exited; restarting after backoff')
    s.timer = this.clock.setTimeout(() => {
      s.timer = undefined
      s.restarts++
      this.restartsTotal.labels(s.spec.name).inc()
      s.state = 'stopped'
      this.launch(s)
    }, delay)
  }

  /** SIGTERM every sidecar, SIGKILL those still alive after their stop_timeout_ms. */
  async stop(): Promise<void> {
    this.stopping = true
    await Promise.all([...this.sidecars.values()].map((s) => this.stopOne(s)))
  }

  private async stopOne(s: Sidecar): Promise<void> {
    if (s.timer !== undefined) this.clock.clearTimeout(s.timer)
    s.timer = undefined
    s.settleFirst('stopped before it spawned')
    const child = s.child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
      s.state = 'stopped'
      return
    }
    s.state = 'stopping'
    child.kill('SIGTERM')
    const killer = this.clock.setTimeout(() => {
      this.log.warn({ sidecar: s.spec.name }, 'sidecar did not stop in time; sending SIGKILL')
      child.kill('SIGKILL')
    }, s.spec.stop_timeout_ms)
    await s.exited
    this.clock.clearTimeout(killer)
    s.state = 'stopped'
  }

  /** Asks every running `switchyard` sidecar for its metrics over IPC and renders them together. */
  async collectMetrics(timeoutMs = 1000): Promise<string> {
    const asks: Promise<unknown[] | undefined>[] = []
    for (const s of this.sidecars.values()) {
      const child = s.child
      if (child === undefined || !child.connected || s.state !== 'running') continue
      const id = this.nextMsgId++
      asks.push(new Promise((resolve) => {
        const done = (v: unknown[] | undefined): void => {
          clearTimeout(t)
          child.off('message', onMsg)
          resolve(v)
        }
        const onMsg = (m: MetricsMessage): void => {
          if (m?.type === METRICS_REQUEST && m.id === id) done(m.metrics)
        }
        const t = setTimeout(() => done(undefined), timeoutMs)
        child.on('message', onMsg)
        try { child.send({ type: METRICS_REQUEST, id }) } catch { done(undefined) }
      }))
    }
    const got = (await Promise.all(asks)).filter((m): m is unknown[] => Array.isArray(m) && m.length > 0)
    if (got.length === 0) return ''
    // Each sidecar labels its series with sidecar="<name>", so aggregation never merges two of them.
    const merged = AggregatorRegistry.aggregate(got as Parameters<typeof AggregatorRegistry.aggregate>[0])
    return merged.metrics()
  }
}
