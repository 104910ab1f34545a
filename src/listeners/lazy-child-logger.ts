import type { FastifyBaseLogger } from 'fastify'
import type { Bindings, ChildLoggerOptions, Level } from 'pino'

/**
 * The proxy route's per-request logger (Fastify's `childLoggerFactory`, issue 15): pino's
 * child() serialises the request id into a new logger for every request, which costs more than
 * most of the proxy's own work, while a proxied request that goes well logs nothing (the access
 * log is opt-in). This stands in for that child and makes it only when a line is written at an
 * enabled level, so every log line still carries reqId.
 */
class LazyChildLogger {
  #child: FastifyBaseLogger | undefined

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bindings: Bindings,
    private readonly opts: ChildLoggerOptions
  ) {}

  get level(): string {
    return this.#child?.level ?? this.opts.level ?? this.parent.level
  }

  set level(level: string) {
    this.real().level = level
  }

  fatal(...args: unknown[]): void { this.write('fatal', args) }
  error(...args: unknown[]): void { this.write('error', args) }
  warn(...args: unknown[]): void { this.write('warn', args) }
  info(...args: unknown[]): void { this.write('info', args) }
  debug(...args: unknown[]): void { this.write('debug', args) }
  trace(...args: unknown[]): void { this.write('trace', args) }
  silent(): void {}

  child(bindings: Bindings, opts?: ChildLoggerOptions): FastifyBaseLogger {
    return this.real().child(bindings, opts)
  }

  isLevelEnabled(level: string): boolean {
    return this.#child === undefined && this.opts.level === undefined ? isEnabled(this.parent, level) : isEnabled(this.real(), level)
  }

  private write(level: Level, args: unknown[]): void {
    // The parent's level decides as long as the child would inherit it (no per-route level).
    if (this.#child === undefined && this.opts.level === undefined && !isEnabled(this.parent, level)) return
    ;(this.real()[level] as (...a: unknown[]) => void)(...args)
  }

  private real(): FastifyBaseLogger {
    return (this.#child ??= this.parent.child(this.bindings, this.opts))
  }
}

function isEnabled(logger: FastifyBaseLogger, level: string): boolean {
  const l = logger as FastifyBaseLogger & { isLevelEnabled?: (level: string) => boolean }
  return typeof l.isLevelEnabled === 'function' ? l.isLevelEnabled(level) : true
}

/** A Fastify childLoggerFactory: the child is made on the first line actually written. */
export function lazyChildLogger(this: unknown, logger: FastifyBaseLogger, bindings: Bindings, opts: ChildLoggerOptions): FastifyBaseLogger {
  return new LazyChildLogger(logger, bindings, opts) as unknown as FastifyBaseLogger
}
