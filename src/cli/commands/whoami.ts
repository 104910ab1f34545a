import { createWhoamiServer } from '../../demo/whoami-server.js'
import { exitWithParent } from '../../sidecars/child-metrics.js'
import { parseFlags, UsageError } from '../flags.js'
import { formatHelp, type OptionSpecs } from '../help.js'

export const summary = 'run a demo backend that answers with its name (like traefik/whoami)'
export const usage = 'switchyard whoami [--port 9001] [--host 127.0.0.1] [--name NAME]'

export const options = {
  port: { type: 'string', short: 'p', default: '9001', value: 'N', help: 'port to listen on; 0 picks a free one (printed)' },
  host: { type: 'string', default: '127.0.0.1', value: 'HOST', help: 'address to listen on' },
  name: { type: 'string', short: 'n', value: 'NAME', help: 'the name it answers with', defaultText: 'whoami-PORT' }
} satisfies OptionSpecs

export const help = formatHelp({
  name: 'whoami',
  summary,
  usage,
  description: 'Answers every request with its name, its host name and the request it received, so the balancer can be watched at work. /health answers 200 ok; /ws is a WebSocket that echoes every message; /data?size=N[&unit=kb|mb] answers N bytes of compressible text (default 1 KiB, at most 10 MiB). Prints one line when listening; SIGTERM or SIGINT stop it.',
  options,
  env: [['SWITCHYARD_SIDECAR_NAME', 'set by `switchyard start` for its sidecars: the program exits with the proxy']],
  examples: ['switchyard whoami --port 9001 --name web-a & curl -s 127.0.0.1:9001/']
})

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, options, usage)
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


