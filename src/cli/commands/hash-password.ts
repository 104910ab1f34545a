import { hashPassword, SCRYPT_DEFAULTS } from '../../security/password-hash.js'
import { parseFlags, UsageError } from '../flags.js'
import { formatHelp, type OptionSpecs } from '../help.js'

export const summary = 'print an scrypt hash of a password (from stdin) for forward.users and basic access rules'
export const usage = 'switchyard hash-password [--cost N] < password.txt'

export const options = {
  cost: { type: 'string', value: 'N', default: String(SCRYPT_DEFAULTS.N), help: 'scrypt cost N, a power of two (memory 128 * N * 8 bytes per check)' }
} satisfies OptionSpecs

export const help = formatHelp({
  name: 'hash-password',
  summary,
  usage,
  description: 'Reads a password from standard input (the first line; its line end is not part of it) and prints scrypt$N$r$p$salt$hash with a fresh random salt, salt and hash in base64: the value of a forward proxy user\'s password_hash or of a user in a route\'s basic access rule. The password never appears on the command line (where ps and shell history would show it). Exit 2 when the input is empty.',
  options,
  env: [],
  examples: ["printf '%s' 's3cret' | switchyard hash-password", 'switchyard hash-password < ~/.proxy-password']
})

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, options, usage)
  const N = Number(values.cost)
  if (!Number.isInteger(N) || N < 2 || N > 2 ** 20 || (N & (N - 1)) !== 0) throw new UsageError(`--cost: expected a power of two from 2 to 1048576, got ${JSON.stringify(values.cost)}`)
  const password = (await readStdin()).split(/\r?\n/)[0]
  if (password === '') throw new UsageError('expected a password on standard input')
  process.stdout.write(`${await hashPassword(password, { N, r: SCRYPT_DEFAULTS.r, p: SCRYPT_DEFAULTS.p })}\n`)
  return 0
}
