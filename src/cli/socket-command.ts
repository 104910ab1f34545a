/** What the socket commands (udp-server, tcp-server, the clients, tcp-adapter) share: flag checks and the server lifecycle. */
import { exitWithParent } from '../sidecars/child-metrics.js'
import { isTransformMode, TRANSFORM_MODES, type TransformMode } from '../sockets/upper.js'
import { UsageError } from './flags.js'

/** The environment variable every server command reads (the clients read none). */
export const SIDECAR_ENV: [string, string] = ['SWITCHYARD_SIDECAR_NAME', 'set by `switchyard start` for its sidecars: the metrics get the label sidecar="NAME" and are served on the proxy\'s /metrics; the program exits when the proxy does']

/** Where the clients' messages come from, for their help. */
export const CLIENT_MESSAGES = 'Sends each message to the server and prints the answer as From Server: <answer>. The words after the options make one message; without them every line of standard input is one (at a terminal, after the lab\'s prompt; Ctrl-D ends).'

export function intFlag(name: string, value: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value)
  if (value === undefined || value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`)
  }
  return n
}

export function numberFlag(name: string, value: string | undefined, min: number): number {
  const n = Number(value)
  if (value === undefined || value.trim() === '' || !Number.isFinite(n) || n < min) {
    throw new UsageError(`--${name}: expected a number of at least ${min}, got ${JSON.stringify(value)}`)
  }
  return n
}

export function portFlag(value: string | undefined, name = 'port'): number {
  return intFlag(name, value, 0, 65535)
}

export function modeFlag(value: string | undefined): TransformMode {
  if (value !== undefined && isTransformMode(value)) return value
  throw new UsageError(`--mode: expected one of ${TRANSFORM_MODES.join(', ')}, got ${JSON.stringify(value)}`)
}

/** 'host:port' or '[v6]:port'. */
export function targetFlag(value: string | undefined, name = 'target'): { host: string; port: number } {
  const m = value === undefined ? null : /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(value)
  if (m === null) throw new UsageError(`--${name}: expected host:port (e.g. 127.0.0.1:12000 or [::1]:12000), got ${JSON.stringify(value)}`)
  const port = intFlag(name, m[3], 1, 65535)
  return { host: m[1] ?? m[2], port }
}

/**
 * Keeps a server command alive until SIGTERM/SIGINT, or until the supervising proxy goes away
 * when run as a sidecar; closes the server and resolves with exit code 0.
 */
export function runUntilStopped(close: () => Promise<void>): Promise<number> {
  return new Promise<number>((resolve) => {
    let stopping: Promise<void> | undefined
    const stop = (): Promise<void> => (stopping ??= close().then(() => resolve(0), () => resolve(1)))
    process.once('SIGTERM', () => void stop())
    process.once('SIGINT', () => void stop())
    exitWithParent(stop)
  })
}
