/**
 * A sidecar's stdout and stderr, relayed into the proxy's log one line at a time. A line that is
 * a JSON object (pino, bunyan, zap, logrus, slog, ...) is embedded as an object under `child`,
 * so `jq '.child.status'` reaches its fields, and its level and message become the record's;
 * any other line stays text in `msg`.
 */
import type { Readable } from 'node:stream'
import type { Level, Logger } from 'pino'

/**
 * The longest line relayed whole, in bytes. Beyond it the line is cut (marked `truncated: true`)
 * and the rest of it, up to its newline, is dropped: memory per stream stays bounded even for a
 * child that never writes a newline. 64 KiB holds a structured line with a long stack trace.
 */
export const MAX_LINE_BYTES = 64 * 1024

const LF = 0x0a
const CR = 0x0d

/** The longest prefix of `b` that does not end inside a UTF-8 sequence. */
function utf8Prefix(b: Buffer): Buffer {
  let end = b.length
  // Step back over continuation bytes (10xxxxxx) to the lead byte of the last character...
  let i = end - 1
  while (i >= 0 && end - i <= 4 && (b[i] & 0xc0) === 0x80) i--
  if (i < 0) return b
  const lead = b[i]
  const size = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1
  // ...and leave it out when it is incomplete.
  if (i + size > end) end = i
  return b.subarray(0, end)
}

/**
 * Newline framing with a bound: push() chunks as they come, end() when the stream ends (a last
 * line without newline is still a line). Lines lose one trailing '\r' (CRLF programs).
 */
export class LineCutter {
  private parts: Buffer[] = []
  private bytes = 0
  /** Inside a line already cut: drop bytes up to its newline. */
  private skipping = false

  constructor(private readonly emit: (line: string, truncated: boolean) => void, private readonly maxBytes = MAX_LINE_BYTES) {}

  push(chunk: Buffer): void {
    let start = 0
    while (start < chunk.length) {
      const nl = chunk.indexOf(LF, start)
      const end = nl === -1 ? chunk.length : nl
      if (this.skipping) {
        if (nl !== -1) this.skipping = false
      } else {
        let piece = chunk.subarray(start, end)
        // The '\r' of a CRLF is not part of the line (and does not count against the bound).
        if (nl !== -1) piece = this.stripCR(piece)
        if (this.bytes + piece.length > this.maxBytes) {
          this.parts.push(piece.subarray(0, this.maxBytes - this.bytes))
          this.flush(true)
          this.skipping = nl === -1
        } else if (nl !== -1) {
          this.parts.push(piece)
          this.flush(false)
        } else {
          // Copied: a view would keep the whole read buffer alive until the newline comes.
          this.parts.push(Buffer.from(piece))
          this.bytes += piece.length
        }
      }
      start = end + 1
    }
  }

  /** The stream ended: a last line without its newline is a line too. */
  end(): void {
    if (this.bytes > 0) this.flush(false)
    this.skipping = false
  }

  private stripCR(piece: Buffer): Buffer {
    if (piece.length > 0 && piece[piece.length - 1] === CR) return piece.subarray(0, piece.length - 1)
    // A CRLF split across chunks: the '\r' is already buffered.
    if (piece.length === 0 && this.bytes > 0) {
      const last = this.parts[this.parts.length - 1]
      if (last[last.length - 1] === CR) {
        this.parts[this.parts.length - 1] = last.subarray(0, last.length - 1)
        this.bytes--
      }
    }
    return piece
  }

  private flush(truncated: boolean): void {
    const whole = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts)
    this.parts = []
    this.bytes = 0
    this.emit((truncated ? utf8Prefix(whole) : whole).toString('utf8'), truncated)
  }
}

/** pino's numbers (10 trace ... 60 fatal) and the names other loggers use. */
const LEVEL_NAMES: Record<string, Level> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  information: 'info',
  notice: 'info',
  warn: 'warn',
  warning: 'warn',
  error: 'error',
  err: 'error',
  fatal: 'fatal',
  critical: 'fatal',
  crit: 'fatal',
  alert: 'fatal',
  emerg: 'fatal',
  emergency: 'fatal',
  panic: 'fatal',
  dpanic: 'fatal'
}

/** The proxy log level for a child's `level` (pino/bunyan number or a name) or `severity` (Google Cloud); info when unknown. */
export function childLevel(record: Record<string, unknown>): Level {
  const raw = record.level ?? record.severity ?? record.lvl
  if (typeof raw === 'number') {
    if (raw >= 60) return 'fatal'
    if (raw >= 50) return 'error'
    if (raw >= 40) return 'warn'
    if (raw >= 30) return 'info'
    if (raw >= 20) return 'debug'
    return 'trace'
  }
  if (typeof raw === 'string') {
    // Own keys only: "constructor" or "__proto__" from a child must not reach Object.prototype.
    const name = raw.toLowerCase()
    return Object.hasOwn(LEVEL_NAMES, name) ? LEVEL_NAMES[name] : 'info'
  }
  return 'info'
}

/** The line as a JSON object, or undefined when it is anything else (text, an array, a number). */
export function parseObjectLine(line: string): Record<string, unknown> | undefined {
  const text = line.trim()
  if (text.charCodeAt(0) !== 0x7b /* { */ || text.charCodeAt(text.length - 1) !== 0x7d /* } */) return undefined
  try {
    const v: unknown = JSON.parse(text)
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

/**
 * One line of a child's output into our log: a JSON object as `child` (whole, as the child wrote
 * it) at the child's level with the child's `msg` (or `message`); text as `msg` at info. A cut
 * line is always text: half an object does not parse.
 */
export function relayLine(log: Logger, stream: 'stdout' | 'stderr', line: string, truncated: boolean): void {
  if (truncated) {
    log.info({ stream, truncated: true }, line)
    return
  }
  const record = parseObjectLine(line)
  if (record === undefined) {
    log.info({ stream }, line)
    return
  }
  const level = childLevel(record)
  const msg = typeof record.msg === 'string' ? record.msg : typeof record.message === 'string' ? record.message : undefined
  if (msg === undefined) log[level]({ stream, child: record })
  else log[level]({ stream, child: record }, msg)
}

/** Relays every line of a child's stream until it ends. */
export function relayOutput(input: Readable, stream: 'stdout' | 'stderr', log: Logger, maxBytes = MAX_LINE_BYTES): void {
  const cutter = new LineCutter((line, truncated) => {
    // Nothing a child prints may throw out of a stream handler (it would end the process).
    try {
      relayLine(log, stream, line, truncated)
    } catch {
      log.info({ stream }, line)
    }
  }, maxBytes)
  input.on('data', (chunk: Buffer) => cutter.push(chunk))
  input.once('end', () => cutter.end())
}
