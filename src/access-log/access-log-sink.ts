import { closeSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import { pino } from 'pino'

/** Where access log lines go: stdout or a file, written asynchronously. */
export interface AccessLogSink {
  write(line: string): void
  /** Opens the file again by its name (after logrotate moved it); `opened` once the new file is open (at once for stdout). */
  reopen(opened: () => void): void
  /** Writes what is queued, then closes (never closes stdout). */
  close(): Promise<void>
}

/** The access log file cannot be opened: the process does not start (a user can fix the path). */
export class AccessLogPathError extends Error {
  constructor(path: string, cause: NodeJS.ErrnoException) {
    super(`logging.access_log.path: cannot open ${path} for appending (${cause.code ?? cause.message})`)
    this.name = 'AccessLogPathError'
  }
}

/**
 * A sonic-boom stream (pino.destination) in async mode: a line is appended to a buffer and
 * written by one write(2) with whatever else queued meanwhile, so the event loop never waits on
 * the disk and a busy proxy makes far fewer syscalls than lines. Each worker of a cluster opens
 * the file with O_APPEND, and sonic-boom writes whole lines, so lines never interleave.
 * `onError`: a write or reopen failed (disk full, directory gone); lines keep being accepted.
 */
export function openAccessLogSink(path: string | undefined, onError: (err: Error) => void): AccessLogSink {
  if (path !== undefined) {
    // Checked at startup, synchronously: a wrong path stops the start with a message, rather
    // than an error event once traffic flows.
    try {
      mkdirSync(dirname(path), { recursive: true })
      closeSync(openSync(path, 'a'))
    } catch (err) {
      throw new AccessLogPathError(path, err as NodeJS.ErrnoException)
    }
  }
  const dest = pino.destination({ dest: path ?? 1, sync: false, append: true, mkdir: true })
  dest.on('error', onError)
  let closing: Promise<void> | undefined
  return {
    write: (line) => { if (closing === undefined) dest.write(line) },
    reopen: (opened) => {
      if (path === undefined) return opened()
      if (closing !== undefined) return
      // sonic-boom opens the new file asynchronously (after a write under way) and says 'ready'.
      const ready = (): void => { dest.off('error', failed); opened() }
      const failed = (): void => { dest.off('ready', ready) }
      dest.once('ready', ready)
      dest.once('error', failed)
      try {
        dest.reopen()
      } catch (err) {
        dest.off('ready', ready)
        dest.off('error', failed)
        onError(err as Error)
      }
    },
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        dest.once('close', () => resolve())
        // A failed stream may never emit close: do not hold the shutdown on it.
        dest.once('error', () => resolve())
        try {
          dest.end()
        } catch {
          resolve() // destroyed already
        }
      })
      return closing
    }
  }
}
