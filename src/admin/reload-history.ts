import type { ReloadAnswer } from '../control/control.js'
import { withoutCredentials } from '../control/reload-plan.js'

/** How many reload answers the control keeps for GET /admin/status and the status page. */
export const RELOADS_KEPT = 10
/** Changes kept per reload (a reload that rewrites everything is summarized past this). */
const CHANGES_KEPT = 50

export interface ReloadRecord {
  /** When the answer was given (ISO 8601, UTC). */
  at: string
  ok: boolean
  /** Changes by class. */
  summary: { live: number; rebuild: number; restart: number }
  changes: { path: string; class: string; detail: string }[]
  /** How many changes were left out of `changes`. */
  more_changes: number
  error: string | null
  started: string[]
  stopped: string[]
  rebuilt: string[]
  workers: number | null
}

/** The last RELOADS_KEPT reload answers (SIGHUP, --watch, POST /admin/reload), newest first. */
export class ReloadHistory {
  private readonly records: ReloadRecord[] = []

  constructor(private readonly wallClock: () => number = Date.now) {}

  add(answer: ReloadAnswer): void {
    const changes = answer.changes ?? []
    const summary = { live: 0, rebuild: 0, restart: 0 }
    for (const c of changes) if (c.class in summary) summary[c.class as keyof typeof summary]++
    this.records.unshift({
      at: new Date(this.wallClock()).toISOString(),
      ok: answer.ok,
      summary,
      changes: changes.slice(0, CHANGES_KEPT).map((c) => ({ path: c.path, class: c.class, detail: c.detail })),
      more_changes: Math.max(0, changes.length - CHANGES_KEPT),
      error: answer.ok ? null : withoutCredentials(answer.error),
      started: answer.ok ? answer.started : [],
      stopped: answer.ok ? answer.stopped : [],
      rebuilt: answer.ok ? answer.rebuilt : [],
      workers: answer.ok ? answer.workers ?? null : null
    })
    this.records.length = Math.min(this.records.length, RELOADS_KEPT)
  }

  /** Runs a reload and keeps its answer (a reload that throws is kept as a failed one). */
  async record(run: () => Promise<ReloadAnswer>): Promise<ReloadAnswer> {
    try {
      const answer = await run()
      this.add(answer)
      return answer
    } catch (err) {
      this.add({ ok: false, error: (err as Error).message })
      throw err
    }
  }

  list(): ReloadRecord[] {
    return this.records.map((r) => ({ ...r }))
  }
}
