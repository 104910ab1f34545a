import { pino } from 'pino'
import { Registry } from 'prom-client'
import { serveMetricsOverIpc } from '../../sidecars/child-metrics.js'
import { DEFAULT_MAX_LINE_BYTES, startTcpServer } from '../../sockets/tcp-server.js'
import { parseFlags } from '../flags.js'
import { intFlag, modeFlag, portFlag, runUntilStopped } from '../socket-command.js'

export const summary = "run the lab's TCP server: answers each line upper-cased, many clients at once"
export const usage = 'switchyard tcp-server [--port 12000] [--host 0.0.0.0] [--mode upper|echo] [--max-line-bytes 65536] [--idle-timeout-ms 30000] [--max-connections 1024] [--flush-ms 100]'

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    port: { type: 'string', short: 'p', default: '12000' },
    host: { type: 'string', default: '0.0.0.0' },
    mode: { type: 'string', default: 'upper' },
    'max-line-bytes': { type: 'string', default: String(DEFAULT_MAX_LINE_BYTES) },
    'idle-timeout-ms': { type: 'string', default: '30000' },
    'max-connections': { type: 'string', default: '1024' },
    'flush-ms': { type: 'string', default: '100' }
  }, usage)
  const opts = {
    port: portFlag(values.port),
    host: String(values.host),
    mode: modeFlag(values.mode),
    maxLineBytes: intFlag('max-line-bytes', values['max-line-bytes'], 1),
    idleTimeoutMs: intFlag('idle-timeout-ms', values['idle-timeout-ms'], 1),
    maxConnections: intFlag('max-connections', values['max-connections'], 1),
    flushMs: intFlag('flush-ms', values['flush-ms'], 0)
  }
  const registry = new Registry()
  serveMetricsOverIpc(registry)
  let server
  try {
    server = await startTcpServer({ ...opts, registry, logger: pino({ name: 'tcp-server' }) })
  } catch (err) {
    process.stderr.write(`switchyard tcp-server: cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}\n`)
    return 1
  }
  return await runUntilStopped(server.close)
}
