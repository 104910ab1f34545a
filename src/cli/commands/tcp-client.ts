import { runTcpClient } from '../../sockets/tcp-client.js'
import { parseFlags } from '../flags.js'
import { intFlag } from '../socket-command.js'

export const summary = "the lab's TCP client: sends each line, prints 'From Server: <answer>'"
export const usage = 'switchyard tcp-client [--host 127.0.0.1] [--port 12000] [--timeout-ms 5000] [--raw] [MESSAGE...]'

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    host: { type: 'string', short: 'H', default: '127.0.0.1' },
    port: { type: 'string', short: 'p', default: '12000' },
    'timeout-ms': { type: 'string', default: '5000' },
    raw: { type: 'boolean', default: false }
  }, usage, true)
  return await runTcpClient({
    host: String(values.host),
    port: intFlag('port', values.port, 1, 65535),
    timeoutMs: intFlag('timeout-ms', values['timeout-ms'], 1),
    raw: values.raw === true,
    message: positionals.length > 0 ? positionals.join(' ') : undefined,
    io: { input: process.stdin, output: process.stdout, errors: process.stderr, interactive: process.stdin.isTTY === true }
  })
}
