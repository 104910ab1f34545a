import type { Logger } from 'pino'
import type { SwitchyardApp } from '../app.js'
import type { Config } from '../config/schema.js'
import type { SplitRequest } from '../admin/split-admin.js'
import { MSG, freezeConfig, type DrainRequest, type Message, type StepResult } from './cluster-protocol.js'
import type { PreparedReload } from './reloader.js'

/**
 * A worker's end of the IPC channel: asks the primary for its config, then answers its
 * requests with the app's own Control and reload phases. Requests that arrive before the app
 * exists wait for it; reload steps run one at a time.
 */
export class WorkerChannel {
  private app: SwitchyardApp | undefined
  private log: Logger | undefined
  private readonly queued: Message[] = []
  private prepared: PreparedReload | undefined
  private steps: Promise<unknown> = Promise.resolve()
  private onConfig: ((m: Message) => void) | undefined

  constructor() {
    process.on('message', (m: Message) => this.onMessage(m))
  }

  /** Asks the primary for the config in effect (workers never read the file). */
  receiveConfig(): Promise<{ config: Config; version: number }> {
    return new Promise((resolve) => {
      this.onConfig = (m) => resolve({ config: freezeConfig(m.config as Config), version: m.version ?? 0 })
      this.send({ type: MSG.hello })
    })
  }

  /** Starts answering the primary's requests with this app. */
  serve(app: SwitchyardApp, log: Logger): void {
    this.app = app
    this.log = log
    for (const m of this.queued.splice(0)) this.handle(m)
  }

  send(m: Message): void {
    if (process.connected) process.send?.(m)
  }

  private onMessage(m: Message): void {
    if (m?.type === MSG.config) {
      this.onConfig?.(m)
      this.onConfig = undefined
      return
    }
    if (this.app === undefined) this.queued.push(m)
    else this.handle(m)
  }

  private handle(m: Message): void {
    const app = this.app as SwitchyardApp
    const reply = (result: unknown): void => this.send({ type: m.type, id: m.id, result })
    switch (m?.type) {
      case MSG.pools:
        void app.control.pools().then(reply)
        break
      case MSG.purge:
        void app.control.purge(m.payload).then(reply)
        break
      case MSG.drain: {
        const d = m.payload as DrainRequest
        void app.control.drain(d.pool, d.member, d.drained).then(reply)
        break
      }
      case MSG.splits:
        void app.control.splits().then(reply)
        break
      case MSG.split:
        void app.control.split(m.payload as SplitRequest).then(reply)
        break
      case MSG.status:
        void app.control.snapshot().then(reply, (err: Error) => reply({ ok: false, error: err.message }))
        break
      case MSG.prepare:
      case MSG.commit:
      case MSG.abort:
      case MSG.apply: {
        const run = this.steps.then(() => this.step(m))
        this.steps = run.catch(() => undefined)
        void run.then(reply)
        break
      }
    }
  }

  private async step(m: Message): Promise<StepResult> {
    const app = this.app as SwitchyardApp
    try {
      switch (m.type) {
        case MSG.prepare:
          await this.prepared?.abort()
          this.prepared = await app.prepareConfig(freezeConfig(m.payload as Config))
          return { ok: true }
        case MSG.commit: {
          const p = this.prepared
          this.prepared = undefined
          if (p === undefined) return { ok: false, error: 'no reload was prepared' }
          const { rebuilt } = await p.commit()
          this.log?.info({ rebuilt }, 'config switched (reload from the primary)')
          return { ok: true, rebuilt }
        }
        case MSG.abort:
          await this.prepared?.abort()
          this.prepared = undefined
          return { ok: true }
        default: {
          const { rebuilt } = await app.applyConfig(freezeConfig(m.payload as Config))
          this.log?.info('config applied (caught up with the primary)')
          return { ok: true, rebuilt }
        }
      }
    } catch (err) {
      return { ok: false, error: (err as Error).message }
    }
  }
}
