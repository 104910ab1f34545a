import { LineConnection, TargetError, formatTarget } from './line-connection.js'
import { formatAnswer, print, readMessages, type ClientIo } from './client-io.js'

export interface TcpClientOptions {
  host: string
  port: number
  /** Budget for connecting, and for each answer. */
  timeoutMs: number
  raw: boolean
  /** Send this instead of reading the input; a newline in it separates messages (it is the protocol's framing). */
  message?: string
  io: ClientIo
}

/** The client's own wording, as a user of `switchyard tcp-client` would say it. */
function describe(err: unknown, target: string, timeoutMs: number): string {
  if (!(err instanceof TargetError)) return err instanceof Error ? err.message : String(err)
  switch (err.kind) {
    case 'refused': return `connection refused by ${target}`
    case 'reset': return `connection reset by ${target}`
    case 'closed': return `connection closed by ${target} before the answer arrived`
    case 'connect_timeout': return `no connection to ${target} within ${timeoutMs} ms`
    case 'timeout': return `no answer from ${target} within ${timeoutMs} ms`
    default: return err.message
  }
}

async function* splitLines(messages: AsyncIterable<string>): AsyncGenerator<string> {
  for await (const m of messages) yield* m.replace(/\r?\n$/, '').split(/\r?\n/)
}

/**
 * The lab's TCP client as a program; returns the exit code (0 every message answered, 1 a
 * network failure: refused, reset, closed early, timeout).
 *
 * Piped input and arguments use one connection for every line, one line in flight at a time.
 * A person at a terminal gets one connection per message, as in the lab: a connection held
 * open while someone types would hit the server's idle timeout.
 */
export async function runTcpClient(opts: TcpClientOptions): Promise<number> {
  const { io } = opts
  const target = formatTarget(opts.host, opts.port)
  const open = (): Promise<LineConnection> => LineConnection.connect({ host: opts.host, port: opts.port, connectTimeoutMs: opts.timeoutMs })
  const messages = splitLines(readMessages(io, opts.message))
  const perMessage = io.interactive && opts.message === undefined
  let conn: LineConnection | undefined
  try {
    if (!perMessage) conn = await open()
    for await (const line of messages) {
      const c = conn ?? await open()
      const answer = await c.request(line, opts.timeoutMs)
      await print(io.output, formatAnswer(answer, opts.raw))
      if (perMessage) await closeGently(c, opts.timeoutMs)
    }
    if (conn !== undefined) await closeGently(conn, opts.timeoutMs)
    return 0
  } catch (err) {
    conn?.destroy()
    io.errors.write(`switchyard tcp-client: ${describe(err, target, opts.timeoutMs)}\n`)
    return 1
  }
}

/** Half-closes and waits (up to timeoutMs) for the server to close too, then lets go. */
async function closeGently(conn: LineConnection, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([conn.end(), new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
  clearTimeout(timer)
  conn.destroy()
}
