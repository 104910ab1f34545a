import type { Registry } from 'prom-client'
import type { Config } from '../config/schema.js'
import type { PurgeResult } from '../cache/purge.js'
import type { Runtime } from '../routing/runtime.js'
import type { Supervisor } from '../sidecars/supervisor.js'
import type { AdminAnswer, Control, ReloadAnswer } from './control.js'
import type { Reloader } from './reloader.js'
import { DrainIntents } from '../admin/drain-intents.js'
import { setMemberDrained } from '../admin/member-drain.js'
import { ReloadHistory } from '../admin/reload-history.js'
import { takeSnapshot, type StatusSnapshot } from '../admin/status-snapshot.js'
import { StatusWindow } from '../admin/status-window.js'
import { applySplitAction, splitsView, type SplitRequest } from '../admin/split-admin.js'

export interface LocalParts {
  registry: Registry
  supervisor: Supervisor | undefined
  runtime: () => Runtime
  purge: (request: unknown) => Promise<PurgeResult>
  ready: () => boolean
  reloader: Reloader
  shutdown: (reason: string) => Promise<void>
  /** The proxy listeners' bound URLs, in config order (undefined before listening). */
  listenerUrls?: () => (string | undefined)[]
}

/** Control over the app in this process (single-process mode; a worker answers the primary with it). */
export class LocalControl implements Control {
  readonly contentType: string
  private readonly history = new ReloadHistory()
  private readonly window = new StatusWindow()
  private readonly drains = new DrainIntents()

  constructor(private readonly parts: LocalParts) {
    this.contentType = parts.registry.contentType
  }

  async metrics(): Promise<string> {
    const own = await this.parts.registry.metrics()
    const sidecars = this.parts.supervisor === undefined ? '' : await this.parts.supervisor.collectMetrics()
    return sidecars === '' ? own : `${own}\n${sidecars}`
  }

  async pools(): Promise<Record<string, unknown>> {
    return { pools: poolsView(this.parts.runtime()) }
  }

  sidecars(): Record<string, unknown>[] {
    return this.parts.supervisor?.list() ?? []
  }

  ready(): boolean {
    return this.parts.ready()
  }

  async reload(config?: Config): Promise<ReloadAnswer> {
    const answer = await this.history.record(() => this.parts.reloader.reload(config))
    if (answer.ok) {
      // A drain call that landed while the reload was being prepared is applied again.
      const rt = this.parts.runtime()
      this.drains.prune(rt.config)
      for (const i of this.drains.all()) setMemberDrained(rt, i.pool, i.member, i.drained)
    }
    return answer
  }

  purge(request: unknown): Promise<PurgeResult> {
    return this.parts.purge(request)
  }

  async drain(pool: string, member: string, drained: boolean): Promise<AdminAnswer> {
    const answer = setMemberDrained(this.parts.runtime(), pool, member, drained)
    if (answer.status === 200) this.drains.set(pool, member, drained)
    return answer
  }

  async splits(): Promise<Record<string, unknown>> {
    return { splits: splitsView(this.parts.runtime()) }
  }

  /**
   * A split call acts on the live runtime's split state; a reload keeps that state for a split
   * whose config it leaves unchanged (a changed split starts afresh, as its experiment did).
   */
  async split(request: SplitRequest): Promise<AdminAnswer> {
    return applySplitAction(this.parts.runtime(), request)
  }

  snapshot(): Promise<StatusSnapshot> {
    return takeSnapshot(this.parts.runtime(), this.parts.registry, this.parts.listenerUrls?.() ?? [])
  }

  async status(): Promise<Record<string, unknown>> {
    const view = this.window.view(await this.snapshot())
    return { mode: 'single', ready: this.ready(), ...view, sidecars: this.sidecars(), reloads: this.history.list() }
  }

  shutdown(reason: string): Promise<void> {
    return this.parts.shutdown(reason)
  }
}

/** Each pool's live state, as /admin/pools shows it. */
export function poolsView(rt: Runtime): Record<string, unknown> {
  const pools: Record<string, unknown> = {}
  for (const [name, pool] of rt.pools) pools[name] = pool.toJSON()
  return pools
}
