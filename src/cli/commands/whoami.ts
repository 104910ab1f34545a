import { createWhoamiServer } from '../../demo/whoami-server.js'
import { exitWithParent } from '../../sidecars/child-metrics.js'
import { parseFlags, UsageError } from '../flags.js'

export const summary = 'run a demo backend that answers with its name (like traefik/whoami)'
export const usage = 'switchyard whoami --port N [--host 127.0.0.1] [--name NAME]'

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    port: { type: 'string', short: 'p', default: '9001' },
    host: { type: 'string', default: '127.0.0.1' },
    name: { type: 'string', short: 'n' }
  }, usage)
  const port = Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port: expected a port number, got ${JSON.stringify(values.port)}`)
  const server = createWhoamiServer(String(values.name ?? `whoami-${port}`))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, String(values.host), () => resolve())
  })
  const addr = server.address()
  process.stdout.write(`whoami ${String(values.name ?? '')} listening on ${typeof addr === 'object' && addr !== null ? `${addr.address}:${addr.port}` : String(addr)}\n`)
  return await new Promise<number>((resolve) => {
    const stop = (): void => { server.close(() => resolve(0)); server.closeAllConnections() }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
    exitWithParent(stop)
  })
}


