import { runUdpClient } from '../../sockets/udp-client.js'
import { parseFlags } from '../flags.js'
import { intFlag } from '../socket-command.js'

export const summary = "the lab's UDP client: sends each message, prints 'From Server: <answer>'"
export const usage = 'switchyard udp-client [--host 127.0.0.1] [--port 12000] [--timeout-ms 1000] [--retries 3] [--raw] [MESSAGE...]'

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    host: { type: 'string', short: 'H', default: '127.0.0.1' },
    port: { type: 'string', short: 'p', default: '12000' },
    'timeout-ms': { type: 'string', default: '1000' },
    retries: { type: 'string', default: '3' },
    raw: { type: 'boolean', default: false }
  }, usage, true)
  return await runUdpClient({
    host: String(values.host),
    port: intFlag('port', values.port, 1, 65535),
    timeoutMs: intFlag('timeout-ms', values['timeout-ms'], 1),
    retries: intFlag('retries', values.retries, 0, 100),
    raw: values.raw === true,
    // Like echo(1): the words of the command line, joined by spaces, make one message.
    message: positionals.length > 0 ? positionals.join(' ') : undefined,
    io: { input: process.stdin, output: process.stdout, errors: process.stderr, interactive: process.stdin.isTTY === true }
  })
}
