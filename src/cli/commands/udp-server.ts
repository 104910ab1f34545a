import { pino } from 'pino'
import { Registry } from 'prom-client'
import { serveMetricsOverIpc } from '../../sidecars/child-metrics.js'
import { DEFAULT_RATE_LIMIT, startUdpServer } from '../../sockets/udp-server.js'
import { parseFlags } from '../flags.js'
import { intFlag, modeFlag, numberFlag, portFlag, runUntilStopped } from '../socket-command.js'

export const summary = "run the lab's UDP server: answers each datagram upper-cased"
export const usage = 'switchyard udp-server [--port 12000] [--host 0.0.0.0] [--mode upper|echo] [--max-reply-factor 2] [--rate 1000] [--burst 200]'

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    port: { type: 'string', short: 'p', default: '12000' },
    host: { type: 'string', default: '0.0.0.0' },
    mode: { type: 'string', default: 'upper' },
    'max-reply-factor': { type: 'string', default: '2' },
    rate: { type: 'string', default: String(DEFAULT_RATE_LIMIT.ratePerSecond) },
    burst: { type: 'string', default: String(DEFAULT_RATE_LIMIT.burst) }
  }, usage)
  const rate = numberFlag('rate', values.rate, 0)
  const burst = intFlag('burst', values.burst, 1)
  const opts = {
    port: portFlag(values.port),
    host: String(values.host),
    mode: modeFlag(values.mode),
    maxReplyFactor: numberFlag('max-reply-factor', values['max-reply-factor'], 1),
    // --rate 0 turns the per-source limit off (a lab on a trusted network, a benchmark).
    rateLimit: rate === 0 ? false as const : { ratePerSecond: rate, burst }
  }
  const registry = new Registry()
  serveMetricsOverIpc(registry)
  const logger = pino({ name: 'udp-server' })
  let server
  try {
    server = await startUdpServer({ ...opts, registry, logger })
  } catch (err) {
    process.stderr.write(`switchyard udp-server: cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}\n`)
    return 1
  }
  return await runUntilStopped(server.close)
}
