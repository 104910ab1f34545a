import { pino } from 'pino'
import { Registry } from 'prom-client'
import { serveMetricsOverIpc } from '../../sidecars/child-metrics.js'
import { startTcpAdapter } from '../../sockets/tcp-adapter.js'
import { parseFlags, UsageError } from '../flags.js'
import { intFlag, portFlag, runUntilStopped, targetFlag } from '../socket-command.js'

export const summary = 'serve a TCP upper-case server over HTTP: GET /upper?text=..., POST /upper'
export const usage = 'switchyard tcp-adapter --target HOST:PORT [--port 8081] [--host 127.0.0.1] [--timeout-ms 5000] [--pool-size 8] [--max-body-bytes 65536]'

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    port: { type: 'string', short: 'p', default: '8081' },
    host: { type: 'string', default: '127.0.0.1' },
    target: { type: 'string', short: 't' },
    'timeout-ms': { type: 'string', default: '5000' },
    'pool-size': { type: 'string', default: '8' },
    'max-body-bytes': { type: 'string', default: '65536' }
  }, usage)
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
    adapter = await startTcpAdapter({ ...opts, registry, logger: pino({ name: 'tcp-adapter' }) })
  } catch (err) {
    process.stderr.write(`switchyard tcp-adapter: cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}\n`)
    return 1
  }
  return await runUntilStopped(adapter.close)
}
