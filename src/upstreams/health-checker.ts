import { createSocket } from 'node:dgram'
import { connect, isIPv6 } from 'node:net'
import type { HealthCheckConfig } from '../config/schema.js'
import { realClock, type Clock } from '../clock.js'
import type { Member } from './member.js'
import type { Pool } from './pool.js'
import type { UpstreamDispatcher } from './dispatcher.js'

/** One check of one member: whether it passed, and what to log and show in /admin/pools. */
export type Probe = (m: Member) => Promise<[boolean, string]>

export interface HealthCheckerOptions {
  clock?: Clock
  /** Replaces the HTTP/TCP check (unit tests script the verdicts; the ticks stay real). */
  probe?: Probe
}

/**
 * Active health checks for one pool: every interval, each member gets an HTTP GET (status in
 * the expected range passes) or a TCP connect, bounded by the timeout; rise/fall consecutive
 * results flip it (HAProxy's `check inter rise fall`).
 */
export class HealthChecker {
  /** Settles once every member has had its first check (or the checker stopped): /readyz waits for it. */
  readonly firstRound: Promise<void>
  private resolveFirst!: () => void
  private timer: unknown
  private started = false
  private stopped = false
  private readonly running = new Set<Member>()
  private readonly clock: Clock
  private readonly probe: Probe

  constructor(private readonly pool: Pool, private readonly cfg: HealthCheckConfig, private readonly dispatcher: UpstreamDispatcher, opts: HealthCheckerOptions = {}) {
    this.clock = opts.clock ?? realClock
    this.probe = opts.probe ?? ((m) => this.check(m))
    this.firstRound = new Promise((resolve) => { this.resolveFirst = resolve })
  }

  start(): void {
    if (this.started || this.stopped) return
    this.started = true
    const first = this.tick()
    void Promise.all(first).then(() => this.resolveFirst())
  }

  stop(): void {
    this.stopped = true
    this.clock.clearTimeout(this.timer)
    this.timer = undefined
    this.resolveFirst()
  }

  /** Checks every member not still being checked, then schedules the next tick (setInterval's rhythm). */
  private tick(): Promise<void>[] {
    if (this.stopped) return []
    this.timer = this.clock.setTimeout(() => { this.tick() }, this.cfg.interval_ms)
    const rounds: Promise<void>[] = []
    for (const m of this.pool.members) {
      if (this.running.has(m)) continue
      this.running.add(m)
      rounds.push(this.bounded(m).then(
        ([ok, detail]) => { if (!this.stopped) this.pool.recordCheck(m, ok, detail, this.cfg.rise, this.cfg.fall) },
        (err: unknown) => { if (!this.stopped) this.pool.recordCheck(m, false, `error: ${(err as Error).message}`, this.cfg.rise, this.cfg.fall) }
      ))
    }
    return rounds
  }

  /**
   * The probe, failed after timeout_ms on our clock whatever the probe does (a connect that
   * hangs is bounded by the pool's connect timeout, which may be longer). The member is not
   * probed again until the probe itself has settled, so hung probes never pile up.
   */
  private bounded(m: Member): Promise<[boolean, string]> {
    return new Promise((resolve, reject) => {
      const t = this.clock.setTimeout(() => resolve([false, 'timeout']), this.cfg.timeout_ms)
      this.probe(m).finally(() => this.running.delete(m)).then(
        (r) => { this.clock.clearTimeout(t); resolve(r) },
        (err: unknown) => { this.clock.clearTimeout(t); reject(err) }
      )
    })
  }

  private async check(m: Member): Promise<[boolean, string]> {
    if (this.cfg.type === 'tcp') return tcpCheck(m.hostname, m.port, this.cfg.timeout_ms)
    if (this.cfg.type === 'udp') return udpCheck(m.hostname, m.port, Buffer.from(this.cfg.payload), this.cfg.timeout_ms)
    try {
      const res = await this.dispatcher.fetch(m.origin, {
        path: this.cfg.path,
        method: 'GET',
        headers: { host: m.host, 'user-agent': 'switchyard-health-check', connection: 'keep-alive' },
        timeoutMs: this.cfg.timeout_ms
      })
      res.body.resume()
      const ok = res.statusCode >= this.cfg.expected_status.min && res.statusCode <= this.cfg.expected_status.max
      return [ok, `http ${res.statusCode}`]
    } catch (err) {
      return [false, `http error: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]
    }
  }
}

function tcpCheck(host: string, port: number, timeoutMs: number): Promise<[boolean, string]> {
  return new Promise((resolve) => {
    const s = connect({ host, port })
    const done = (ok: boolean, detail: string): void => {
      s.destroy()
      resolve([ok, detail])
    }
    s.setTimeout(timeoutMs, () => done(false, 'tcp timeout'))
    s.once('connect', () => done(true, 'tcp connect'))
    s.once('error', (err: NodeJS.ErrnoException) => done(false, `tcp error: ${err.code ?? err.message}`))
  })
}

/**
 * Sends `payload` from a fresh socket and passes on any reply. A closed port usually shows as
 * ECONNREFUSED (the ICMP port unreachable reaches a connected UDP socket); a silent member as
 * a timeout.
 */
function udpCheck(host: string, port: number, payload: Buffer, timeoutMs: number): Promise<[boolean, string]> {
  return new Promise((resolve) => {
    const s = createSocket(isIPv6(host) ? 'udp6' : 'udp4')
    let settled = false
    const done = (ok: boolean, detail: string): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      try { s.close() } catch { /* already closed */ }
      resolve([ok, detail])
    }
    const timer = setTimeout(() => done(false, 'udp timeout'), timeoutMs)
    s.once('message', () => done(true, 'udp reply'))
    s.once('error', (err: NodeJS.ErrnoException) => done(false, `udp error: ${err.code ?? err.message}`))
    s.connect(port, host, () => s.send(payload, (err) => { if (err) done(false, `udp error: ${(err as NodeJS.ErrnoException).code ?? err.message}`) }))
  })
}
