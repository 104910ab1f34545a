import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino'
import pinoPretty from 'pino-pretty'
import { LOG_FORMATS, type Config, type LogFormat } from '../config/schema.js'

/** Wins over `logging.format`; the cluster primary also sets it for its workers (see exportLogFormat). */
export const LOG_FORMAT_ENV = 'SWITCHYARD_LOG_FORMAT'

/** The user set SWITCHYARD_LOG_FORMAT to something other than auto, json or pretty. */
export class LogFormatError extends Error {
  constructor(value: string) {
    super(`${LOG_FORMAT_ENV}: expected one of ${LOG_FORMATS.map((f) => JSON.stringify(f)).join(', ')}, got ${JSON.stringify(value)}`)
    this.name = 'LogFormatError'
  }
}

/** What the process logger reads of the config (the access log is access-log/'s). */
type LoggingConfig = { logging: Pick<Config['logging'], 'level' | 'format'> }

interface Surroundings {
  env?: NodeJS.ProcessEnv
  /** Whether stdout is a terminal (default: process.stdout.isTTY). */
  isTTY?: boolean
}

/**
 * The format this process writes: the environment's SWITCHYARD_LOG_FORMAT, else the config's
 * `logging.format`; `auto` becomes pretty on a terminal, JSON otherwise (a pipe, a file, a log
 * collector). Throws LogFormatError for a value the environment got wrong.
 */
export function resolveLogFormat(config: LoggingConfig, s: Surroundings = {}): 'json' | 'pretty' {
  const env = s.env ?? process.env
  const fromEnv = env[LOG_FORMAT_ENV]
  let format: LogFormat = config.logging.format
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!(LOG_FORMATS as readonly string[]).includes(fromEnv)) throw new LogFormatError(fromEnv)
    format = fromEnv as LogFormat
  }
  if (format !== 'auto') return format
  return (s.isTTY ?? process.stdout.isTTY) === true ? 'pretty' : 'json'
}

/**
 * Pins the decision for the processes this one forks: node:cluster workers inherit the
 * environment, so they write what the primary decided (its stdout is the one a person watches).
 */
export function exportLogFormat(format: 'json' | 'pretty', env: NodeJS.ProcessEnv = process.env): void {
  env[LOG_FORMAT_ENV] = format
}

/** Colors only for a terminal, and never with NO_COLOR (https://no-color.org); FORCE_COLOR forces them. */
function wantsColor(env: NodeJS.ProcessEnv, isTTY: boolean): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false') return true
  return isTTY
}

/**
 * pino-pretty in this thread, writing synchronously: every line is on stdout when the call
 * returns (no worker-thread transport to flush at exit, nothing lost on process.exit). One
 * line per record; the fields beside the message follow it as compact JSON.
 */
export function prettyDestination(opts: { fd?: number; colorize: boolean }): DestinationStream {
  const format = pinoPretty.prettyFactory({
    colorize: opts.colorize,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,service,sidecar,worker',
    singleLine: true,
    // "[sidecar lab] message", "[worker 4242] message": who said it, up front.
    messageFormat: '{if sidecar}[sidecar {sidecar}] {end}{if worker}[worker {worker}] {end}{msg}'
  })
  const out = pino.destination({ dest: opts.fd ?? 1, sync: true })
  return { write: (line: string) => { out.write(format(line)) } }
}

/**
 * The process's logger on stdout, at the config's level, in the format resolveLogFormat
 * decides. JSON is pino's own path, unchanged (no per-line work beyond pino's).
 */
export function createLogger(config: LoggingConfig, s: Surroundings & { format?: 'json' | 'pretty' } = {}): Logger {
  const opts: LoggerOptions = { level: config.logging.level, base: { service: 'switchyard' } }
  const format = s.format ?? resolveLogFormat(config, s)
  if (format === 'json') return pino(opts)
  const env = s.env ?? process.env
  return pino(opts, prettyDestination({ colorize: wantsColor(env, (s.isTTY ?? process.stdout.isTTY) === true) }))
}

/**
 * The logger of a lab program (udp-server, tcp-server, tcp-adapter): no config file, so the
 * format is SWITCHYARD_LOG_FORMAT's, else auto. As a sidecar its stdout is a pipe (and the
 * supervisor sets json), so the proxy gets JSON lines it embeds as objects.
 */
export function createProgramLogger(name: string, s: Surroundings = {}): Logger {
  const format = resolveLogFormat({ logging: { level: 'info', format: 'auto' } }, s)
  if (format === 'json') return pino({ name })
  return pino({ name }, prettyDestination({ colorize: wantsColor(s.env ?? process.env, (s.isTTY ?? process.stdout.isTTY) === true) }))
}
