import { runUdpClient } from '../../sockets/udp-client.js'
import { parseFlags } from '../flags.js'
import { formatHelp, type OptionSpecs } from '../help.js'
import { CLIENT_MESSAGES, intFlag } from '../socket-command.js'

export const summary = "the lab's UDP client: sends each message, prints 'From Server: <answer>'"
export const usage = 'switchyard udp-client [--host 127.0.0.1] [--port 12000] [--timeout-ms 1000] [--retries 3] [--raw] [MESSAGE...]'

export const options = {
  host: { type: 'string', short: 'H', default: '127.0.0.1', value: 'HOST', help: 'the server\'s address' },
  port: { type: 'string', short: 'p', default: '12000', value: 'N', help: 'the server\'s port' },
  'timeout-ms': { type: 'string', default: '1000', value: 'MS', help: 'wait this long for each answer' },
  retries: { type: 'string', default: '3', value: 'N', help: 'send a message again up to N times when no answer came (0-100)' },
  raw: { type: 'boolean', default: false, help: 'print the bare answer instead of From Server: <answer>' }
} satisfies OptionSpecs

export const help = formatHelp({
  name: 'udp-client',
  summary,
  usage,
  description: `${CLIENT_MESSAGES} Each message goes out on a fresh socket, so a late answer to an earlier one cannot be taken for its own. No answer after every attempt is an error (exit 1).`,
  options,
  positionals: [['MESSAGE...', 'words joined by spaces into one message; without them, each line of standard input is one']],
  env: [],
  examples: ['switchyard udp-client --port 12000 hello world']
})

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, options, usage, true)
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
