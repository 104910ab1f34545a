import { Registry } from 'prom-client'
import { serveMetricsOverIpc } from '../../sidecars/child-metrics.js'
import { startTcpAdapter } from '../../sockets/tcp-adapter.js'
import { createProgramLogger } from '../../control/logger.js'
import { parseFlags, UsageError } from '../flags.js'
import { formatHelp, type OptionSpecs } from '../help.js'
import { intFlag, portFlag, runUntilStopped, SIDECAR_ENV, targetFlag } from '../socket-command.js'

export const summary = 'serve a TCP upper-case server over HTTP: GET /upper?text=..., POST /upper'
export const usage = 'switchyard tcp-adapter --target HOST:PORT [--port 8081] [--host 127.0.0.1] [--timeout-ms 5000] [--pool-size 8] [--max-body-bytes 65536]'

export const options = {
  target: { type: 'string', short: 't', value: 'HOST:PORT', help: 'the TCP server (e.g. 127.0.0.1:12000 or [::1]:12000)', required: true },
  port: { type: 'string', short: 'p', default: '8081', value: 'N', help: 'HTTP port to listen on; 0 picks a free one (logged)' },
  host: { type: 'string', default: '127.0.0.1', value: 'HOST', help: 'address to listen on' },
  'timeout-ms': { type: 'string', default: '5000', value: 'MS', help: 'answer 504 when the target has not answered within this (waiting for a connection included)' },
  'pool-size': { type: 'string', default: '8', value: 'N', help: 'persistent connections to the target (1-1024), one request in flight on each' },
  'max-body-bytes': { type: 'string', default: '65536', value: 'N', help: 'longest text accepted (413, or 414 for GET); the TCP server\'s line limit' }
} satisfies OptionSpecs

export const help = formatHelp({
  name: 'tcp-adapter',
  summary,
  usage,
  description: 'An HTTP/1.1 front for the TCP server, so the proxy can route, balance and cache it. GET /upper?text=hello (or HEAD) answers 200 HELLO with Cache-Control: public, max-age=60 and an ETag; POST /upper answers the body transformed, never cached; /health answers 200 ok without calling the target. A refused or reset target gives 502, a slow one 504. Logs on stdout: JSON lines, or readable lines on a terminal (SWITCHYARD_LOG_FORMAT: auto, json, pretty); SIGTERM or SIGINT stop it.',
  options,
  env: [SIDECAR_ENV],
  examples: ["switchyard tcp-adapter --target 127.0.0.1:12000 --port 8081 & curl 'http://127.0.0.1:8081/upper?text=hello'"]
})

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, options, usage)
  if (values.target === undefined) throw new UsageError('--target is required (the TCP server, e.g. 127.0.0.1:12000)')
  const opts = {
    port: portFlag(values.port),
    host: String(values.host),
    target: targetFlag(values.target),
    timeoutMs: intFlag('timeout-ms', values['timeout-ms'], 1),
    poolSize: intFlag('pool-size', values['pool-size'], 1, 1024),
    maxBodyBytes: intFlag('max-body-bytes', values['max-body-bytes'], 1)
  }
  const registry = new Registry()
  serveMetricsOverIpc(registry)
  let adapter
  try {
    adapter = await startTcpAdapter({ ...opts, registry, logger: createProgramLogger('tcp-adapter') })
  } catch (err) {
    process.stderr.write(`switchyard tcp-adapter: cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}\n`)
    return 1
  }
  return await runUntilStopped(adapter.close)
}
