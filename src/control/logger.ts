import { pino, type Logger } from 'pino'
import type { Config } from '../config/schema.js'

/** The process's JSON logger (stdout), at the config's level. */
export function createLogger(config: Pick<Config, 'logging'>): Logger {
  return pino({ level: config.logging.level, base: { service: 'switchyard' } })
}
