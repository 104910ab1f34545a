/**
 * Startup and shutdown shared by the single process, the cluster primary and its workers:
 * resources are closed by whoever opened them, in the reverse order of opening, once; a startup
 * that fails anywhere closes what it had opened and reports one line saying why.
 */
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'

/** An ordered close list: add() right where a resource is opened; closeAll() closes newest first. */
export class Resources {
  private readonly items: { name: string; close: () => unknown }[] = []
  private closing: Promise<void> | undefined

  constructor(private readonly log?: Logger) {}

  add(name: string, close: () => unknown): void {
    this.items.push({ name, close })
  }

  /** Closes every resource once (later calls share the first); a failure is logged, the rest still close. */
  closeAll(): Promise<void> {
    this.closing ??= (async () => {
      for (const r of this.items.reverse()) {
        try {
          await r.close()
        } catch (err) {
          this.log?.warn({ resource: r.name, err: (err as Error).message }, 'closing a resource failed')
        }
      }
    })()
    return this.closing
  }
}

/** A startup step failed; the message is the one line the process prints. */
export class StartupError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, { cause })
    this.name = 'StartupError'
  }
}

/** Any startup failure as the one line the process prints. */
export function asStartupError(err: unknown): StartupError {
  return err instanceof StartupError ? err : new StartupError((err as Error).message ?? String(err), err)
}

/** One readable line for a listen failure. */
export function describeListenError(err: unknown, what: string, host: string, port: number): string {
  const e = err as NodeJS.ErrnoException
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`
  switch (e.code) {
    case 'EADDRINUSE': return `${what} ${where}: address already in use`
    case 'EACCES': return `${what} ${where}: permission denied (ports below 1024 need privileges)`
    case 'EADDRNOTAVAIL': return `${what} ${where}: address not available on this machine`
    case 'ENOTFOUND': case 'EAI_AGAIN': return `${what} ${where}: cannot resolve the host`
    default: return `${what} ${where}: ${e.message ?? String(err)}`
  }
}

/** Listens, turning a bind failure into a StartupError that names the listener and address. */
export async function listenOn(server: FastifyInstance, what: string, host: string, port: number): Promise<string> {
  try {
    return await server.listen({ host, port })
  } catch (err) {
    throw new StartupError(describeListenError(err, what, host, port), err)
  }
}
