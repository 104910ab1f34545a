import { connect } from 'node:net'
import type { HealthCheckConfig } from '../config/schema.js'
import type { Member } from './member.js'
import type { Pool } from './pool.js'
import type { UpstreamDispatcher } from './dispatcher.js'

/**
 * Active health checks for one pool: every interval, each member gets an HTTP GET (status in
 * the expected range passes) or a TCP connect, bounded by the timeout; rise/fall consecutive
 * results flip it (HAProxy's `check inter rise fall`).
 */
export class HealthChecker {
  private timer: NodeJS.Timeout | undefined
  private readonly running = new Set<Member>()

  constructor(private readonly pool: Pool, private readonly cfg: HealthCheckConfig, private readonly dispatcher: UpstreamDispatcher) {}

  start(): void {
    if (this.timer !== undefined) return
    this.tick()
    this.timer = setInterval(() => this.tick(), this.cfg.interval_ms)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  private tick(): void {
    for (const m of this.pool.members) {
      if (this.running.has(m)) continue
      this.running.add(m)
      void this.check(m).then(
        ([ok, detail]) => this.pool.recordCheck(m, ok, detail, this.cfg.rise, this.cfg.fall),
        (err: unknown) => this.pool.recordCheck(m, false, `error: ${(err as Error).message}`, this.cfg.rise, this.cfg.fall)
      ).finally(() => this.running.delete(m))
    }
  }

  private async check(m: Member): Promise<[boolean, string]> {
    if (this.cfg.type === 'tcp') return tcpCheck(m.hostname, m.port, this.cfg.timeout_ms)
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
