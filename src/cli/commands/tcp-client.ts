import { runTcpClient } from '../../sockets/tcp-client.js'
import { parseFlags } from '../flags.js'
import { formatHelp, type OptionSpecs } from '../help.js'
import { CLIENT_MESSAGES, intFlag } from '../socket-command.js'

export const summary = "the lab's TCP client: sends each line, prints 'From Server: <answer>'"
export const usage = 'switchyard tcp-client [--host 127.0.0.1] [--port 12000] [--timeout-ms 5000] [--raw] [MESSAGE...]'

export const options = {
  host: { type: 'string', short: 'H', default: '127.0.0.1', value: 'HOST', help: 'the server\'s address' },
  port: { type: 'string', short: 'p', default: '12000', value: 'N', help: 'the server\'s port' },
  'timeout-ms': { type: 'string', default: '5000', value: 'MS', help: 'wait this long for the connection, and for each answer' },
  raw: { type: 'boolean', default: false, help: 'print the bare answer instead of From Server: <answer>' }
} satisfies OptionSpecs

export const help = formatHelp({
  name: 'tcp-client',
  summary,
  usage,
  description: `${CLIENT_MESSAGES} Arguments and piped lines share one connection; at a terminal each message gets its own. A refused, reset or silent connection is an error (exit 1).`,
  options,
  positionals: [['MESSAGE...', 'words joined by spaces into one message; without them, each line of standard input is one']],
  env: [],
  examples: ["printf 'a\\nb\\n' | switchyard tcp-client --port 12000"]
})

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, options, usage, true)
  return await runTcpClient({
    host: String(values.host),
    port: intFlag('port', values.port, 1, 65535),
    timeoutMs: intFlag('timeout-ms', values['timeout-ms'], 1),
    raw: values.raw === true,
    message: positionals.length > 0 ? positionals.join(' ') : undefined,
    io: { input: process.stdin, output: process.stdout, errors: process.stderr, interactive: process.stdin.isTTY === true }
  })
}
