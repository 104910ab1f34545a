import { Registry } from 'prom-client'
import { serveMetricsOverIpc } from '../../sidecars/child-metrics.js'
import { DEFAULT_LINGER_MS, DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_PER_ADDRESS, startTcpServer } from '../../sockets/tcp-server.js'
import { createProgramLogger } from '../../control/logger.js'
import { parseFlags } from '../flags.js'
import { formatHelp, type OptionSpecs } from '../help.js'
import { intFlag, modeFlag, portFlag, runUntilStopped, SIDECAR_ENV } from '../socket-command.js'

export const summary = "run the lab's TCP server: answers each line upper-cased, many clients at once"
export const usage = 'switchyard tcp-server [--port 12000] [--host 0.0.0.0] [--mode upper|echo] [--max-line-bytes 65536] [--idle-timeout-ms 30000] [--max-connections 1024] [--max-per-address 64] [--flush-ms 100] [--linger-ms 1000]'

export const options = {
  port: { type: 'string', short: 'p', default: '12000', value: 'N', help: 'port to listen on; 0 picks a free one (logged)' },
  host: { type: 'string', default: '0.0.0.0', value: 'HOST', help: 'address to listen on; :: for IPv6' },
  mode: { type: 'string', default: 'upper', value: 'MODE', help: 'upper (Unicode upper case) or echo (the text unchanged)' },
  'max-line-bytes': { type: 'string', default: String(DEFAULT_MAX_LINE_BYTES), value: 'N', help: 'longest accepted line, terminator excluded; longer ones get ERROR line too long' },
  'idle-timeout-ms': { type: 'string', default: '30000', value: 'MS', help: 'close a connection after this long with no traffic either way' },
  'max-connections': { type: 'string', default: '1024', value: 'N', help: 'connections beyond this are refused with an error line' },
  'max-per-address': { type: 'string', default: String(DEFAULT_MAX_PER_ADDRESS), value: 'N', help: 'open connections allowed from one client IP address, so one host cannot take every slot; beyond it, refused with an error line; 0 turns the cap off' },
  'flush-ms': { type: 'string', default: '100', value: 'MS', help: 'answer an unterminated line after this much quiet (the lab\'s client sends no newline); 0 turns it off' },
  'linger-ms': { type: 'string', default: String(DEFAULT_LINGER_MS), value: 'MS', help: 'after an error line (line too long, idle timeout) the connection is closed at the latest this long later, whatever the client keeps sending' }
} satisfies OptionSpecs

export const help = formatHelp({
  name: 'tcp-server',
  summary,
  usage,
  description: 'Every line a client sends (LF or CRLF) is answered with the line transformed and a newline, in order, with backpressure; many clients at once. A last line without newline is answered when the client half-closes or after --flush-ms of quiet (a character whose bytes are still arriving is never split). After an error line the server reads at most 64 KiB more and closes within --linger-ms; refused connections are closed as soon as their error line is written. Logs on stdout: JSON lines, or readable lines on a terminal (SWITCHYARD_LOG_FORMAT: auto, json, pretty); SIGTERM or SIGINT stop it.',
  options,
  env: [SIDECAR_ENV],
  examples: ["switchyard tcp-server --port 12000 & printf 'one\\ntwo\\n' | switchyard tcp-client --port 12000"]
})

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, options, usage)
  const opts = {
    port: portFlag(values.port),
    host: String(values.host),
    mode: modeFlag(values.mode),
    maxLineBytes: intFlag('max-line-bytes', values['max-line-bytes'], 1),
    idleTimeoutMs: intFlag('idle-timeout-ms', values['idle-timeout-ms'], 1),
    maxConnections: intFlag('max-connections', values['max-connections'], 1),
    maxPerAddress: intFlag('max-per-address', values['max-per-address'], 0),
    flushMs: intFlag('flush-ms', values['flush-ms'], 0),
    lingerMs: intFlag('linger-ms', values['linger-ms'], 1)
  }
  const registry = new Registry()
  serveMetricsOverIpc(registry)
  let server
  try {
    server = await startTcpServer({ ...opts, registry, logger: createProgramLogger('tcp-server') })
  } catch (err) {
    process.stderr.write(`switchyard tcp-server: cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}\n`)
    return 1
  }
  return await runUntilStopped(server.close)
}
