/**
 * The IPC messages between the cluster primary and its workers. The primary validates the
 * config once and sends the object; workers never read the file.
 */
import type { Config } from '../config/schema.js'

export const MSG = {
  /** worker -> primary: ready to receive its config. */
  hello: 'switchyard:hello',
  /** primary -> worker: `{ config, version }`, the config in effect. */
  config: 'switchyard:config',
  /** worker -> primary: `{ error }`, why it cannot start (it exits next). */
  failed: 'switchyard:startup-failed',
  /** worker -> primary: listening and its first health checks done. */
  ready: 'switchyard:ready',
  /** worker -> primary: SIGTERM received, draining; start its replacement. */
  draining: 'switchyard:draining',
  /** primary -> worker requests, answered with the same type and id: */
  prepare: 'switchyard:prepare',
  commit: 'switchyard:commit',
  abort: 'switchyard:abort',
  apply: 'switchyard:apply',
  pools: 'switchyard:pools',
  purge: 'switchyard:purge',
  /** `{ pool, member, drained }`: drain a member or put it back (answered with an AdminAnswer). */
  drain: 'switchyard:drain',
  /** The worker's splits view (src/admin/split-admin.ts). */
  splits: 'switchyard:splits',
  /** `{ split, action, variant? }`: reset a split or promote a variant (answered with an AdminAnswer). */
  split: 'switchyard:split',
  /** The worker's status snapshot (src/admin/status-snapshot.ts). */
  status: 'switchyard:status'
} as const

export interface Message {
  type: string
  id?: number
  payload?: unknown
  result?: unknown
  error?: string
  config?: Config
  version?: number
}

/** The payload of MSG.drain. */
export interface DrainRequest {
  pool: string
  member: string
  drained: boolean
}

/** What a worker answers to prepare/commit/abort/apply. */
export type StepResult = { ok: true; rebuilt?: string[] } | { ok: false; error: string }

/** A config that crossed IPC as JSON, frozen again like loadConfig's. */
export function freezeConfig(config: Config): Config {
  const freeze = (v: unknown): void => {
    if (typeof v !== 'object' || v === null || Object.isFrozen(v)) return
    Object.freeze(v)
    for (const x of Object.values(v)) freeze(x)
  }
  freeze(config)
  return config
}
