import type { Config } from '../config/schema.js'
import type { PurgeResult } from '../cache/purge.js'
import type { Change } from './reload-plan.js'
import type { AdminAnswer } from '../admin/member-drain.js'
import type { StatusSnapshot } from '../admin/status-snapshot.js'
import type { SplitRequest } from '../admin/split-admin.js'

export type { AdminAnswer }

/** The answer to a reload (POST /admin/reload, SIGHUP, --watch), logged the same way. */
export type ReloadAnswer =
  | {
    ok: true
    /** Every change with its class: live, rebuild or restart (restart ones are not applied). */
    changes: Change[]
    /** Sidecars started and stopped (a changed sidecar is in both). */
    started: string[]
    stopped: string[]
    /** Origins whose connection pool was rebuilt. */
    rebuilt: string[]
    /** Workers that switched (workers mode). */
    workers?: number
  }
  | { ok: false; error: string; changes?: Change[] }

/**
 * What the admin listener and the process signals act on, the same for one process and for a
 * cluster primary: LocalControl runs it on the app in this process, ClusterControl fans it out
 * to the workers over IPC.
 */
export interface Control {
  readonly contentType: string
  /** Prometheus text: this process, or the workers' aggregate plus the primary's own. */
  metrics(): Promise<string>
  /** /admin/pools: `{ pools }`, plus `workers: [{ pid, pools }]` in workers mode. */
  pools(): Promise<Record<string, unknown>>
  sidecars(): Record<string, unknown>[]
  /** /readyz: listening, sidecars spawned, first health checks done, not draining. */
  ready(): boolean
  /** Applies `config` (already validated), or reads and validates the config file again. */
  reload(config?: Config): Promise<ReloadAnswer>
  purge(request: unknown): Promise<PurgeResult>
  /** Drains a pool member (`drained: true`) or puts it back; 404 for an unknown pool or member. */
  drain(pool: string, member: string, drained: boolean): Promise<AdminAnswer>
  /** GET /admin/splits: `{ splits }` (this process), plus `workers: [{ pid, splits }]` in workers mode. */
  splits(): Promise<Record<string, unknown>>
  /** Resets a split's guardrail rollbacks and promotion, or promotes a variant (every worker). */
  split(request: SplitRequest): Promise<AdminAnswer>
  /** The cumulative state the status page shows (a cluster primary: its workers' sum). */
  snapshot(): Promise<StatusSnapshot | undefined>
  /** GET /admin/status: the snapshot with rates over a recent window, sidecars and the last reloads. */
  status(): Promise<Record<string, unknown>>
  /** Drains and stops everything, within limits.shutdown_timeout_ms for the drain. */
  shutdown(reason: string): Promise<void>
}

export const NO_CACHE: PurgeResult = { status: 404, body: { error: 'no route has the cache enabled' } }
