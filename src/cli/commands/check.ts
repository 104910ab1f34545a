import { dirname } from 'node:path'
import { ConfigError, loadConfigFile } from '../../config/load.js'
import { checkListenerTls } from '../../tls/check.js'
import { parseFlags, UsageError } from '../flags.js'
import { formatHelp, type OptionSpecs } from '../help.js'

export const summary = 'validate an upstreams.yaml without starting anything'
export const usage = 'switchyard check [FILE | --config FILE]'

export const options = {
  config: { type: 'string', short: 'c', value: 'FILE', help: 'the configuration to check, as `start --config` takes it (or give FILE)' }
} satisfies OptionSpecs

export const help = formatHelp({
  name: 'check',
  summary,
  usage,
  description: 'Reads the file as `switchyard start` would: YAML syntax, ${VAR} interpolation, the schema (types, ranges, unknown keys, empty values), references between sections (unknown pools, duplicate names) and the TLS certificate and key files it names. Every problem is printed together on stderr, sorted by line, as FILE:LINE:COL: PATH: WHAT WAS EXPECTED; exit 1. A good file prints one line on stdout; exit 0. Nothing is started or bound.',
  options,
  positionals: [['FILE', 'the configuration to check (default: $SWITCHYARD_CONFIG, else upstreams.yaml)']],
  env: [
    ['SWITCHYARD_CONFIG', 'the file to check when FILE is not given'],
    ['${VAR} in the file', 'any variable the file names; an unset one without a default is a problem']
  ],
  examples: ['switchyard check upstreams.yaml && switchyard start --config upstreams.yaml']
})

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, options, usage, true)
  if (positionals.length > 1) throw new UsageError(`expected one FILE, got ${positionals.length}`)
  if (positionals.length === 1 && values.config !== undefined) throw new UsageError('give FILE or --config FILE, not both')
  const file = values.config ?? positionals[0] ?? process.env.SWITCHYARD_CONFIG ?? 'upstreams.yaml'
  try {
    const c = loadConfigFile(file)
    // The files the config names must be usable too: TLS certificates and keys.
    const tls = await checkListenerTls(c, dirname(file))
    // One listener reads as `listen.*`, as it is usually written (a mapping).
    if (c.listen.length === 1) for (const i of tls) if (i.path[0] === 'listen') i.path.splice(1, 1)
    if (tls.length > 0) throw new ConfigError(file, tls)
    process.stdout.write(`${file}: ok (${Object.keys(c.pools).length} pools, ${c.routes.length} routes, ${c.sidecars.length} sidecars)\n`)
    return 0
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`)
      return 1
    }
    throw err
  }
}
