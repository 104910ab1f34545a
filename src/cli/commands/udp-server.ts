import { Registry } from 'prom-client'
import { serveMetricsOverIpc } from '../../sidecars/child-metrics.js'
import { DEFAULT_RATE_LIMIT, startUdpServer } from '../../sockets/udp-server.js'
import { createProgramLogger } from '../../control/logger.js'
import { parseFlags } from '../flags.js'
import { formatHelp, type OptionSpecs } from '../help.js'
import { intFlag, modeFlag, numberFlag, portFlag, runUntilStopped, SIDECAR_ENV } from '../socket-command.js'

export const summary = "run the lab's UDP server: answers each datagram upper-cased"
export const usage = 'switchyard udp-server [--port 12000] [--host 0.0.0.0] [--mode upper|echo] [--max-reply-factor 2] [--rate 1000] [--burst 200] [--rcvbuf BYTES]'

export const options = {
  port: { type: 'string', short: 'p', default: '12000', value: 'N', help: 'port to listen on; 0 picks a free one (logged)' },
  host: { type: 'string', default: '0.0.0.0', value: 'HOST', help: 'address to listen on; :: for IPv6' },
  mode: { type: 'string', default: 'upper', value: 'MODE', help: 'upper (Unicode upper case) or echo (the text unchanged)' },
  'max-reply-factor': { type: 'string', default: '2', value: 'X', help: 'never answer with more than X times the request\'s bytes (no amplification)' },
  rate: { type: 'string', default: String(DEFAULT_RATE_LIMIT.ratePerSecond), value: 'N', help: 'datagrams per second allowed per source address (token bucket); 0 turns the limit off' },
  burst: { type: 'string', default: String(DEFAULT_RATE_LIMIT.burst), value: 'N', help: 'datagrams a quiet source may send at once' },
  rcvbuf: { type: 'string', value: 'BYTES', defaultText: 'the system\'s', help: 'kernel receive buffer (SO_RCVBUF): what overflows it is dropped unseen; Linux caps it at net.core.rmem_max (warned); the size in effect is logged' }
} satisfies OptionSpecs

export const help = formatHelp({
  name: 'udp-server',
  summary,
  usage,
  description: 'One answer datagram per request datagram, from the port it was received on. Bytes that are not UTF-8 become U+FFFD in the answer. Logs on stdout: JSON lines, or readable lines on a terminal (SWITCHYARD_LOG_FORMAT: auto, json, pretty); SIGTERM or SIGINT stop it.',
  options,
  env: [SIDECAR_ENV],
  examples: ['switchyard udp-server --port 12000 & echo hello | switchyard udp-client --port 12000']
})

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, options, usage)
  const rate = numberFlag('rate', values.rate, 0)
  const burst = intFlag('burst', values.burst, 1)
  const opts = {
    port: portFlag(values.port),
    host: String(values.host),
    mode: modeFlag(values.mode),
    maxReplyFactor: numberFlag('max-reply-factor', values['max-reply-factor'], 1),
    // --rate 0 turns the per-source limit off (a lab on a trusted network, a benchmark).
    rateLimit: rate === 0 ? false as const : { ratePerSecond: rate, burst },
    recvBufferSize: values.rcvbuf === undefined ? undefined : intFlag('rcvbuf', values.rcvbuf, 1, 2 ** 31 - 1)
  }
  const registry = new Registry()
  serveMetricsOverIpc(registry)
  const logger = createProgramLogger('udp-server')
  let server
  try {
    server = await startUdpServer({ ...opts, registry, logger })
  } catch (err) {
    process.stderr.write(`switchyard udp-server: cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}\n`)
    return 1
  }
  return await runUntilStopped(server.close)
}
