import { ConfigError, loadConfigFile } from '../../config/load.js'
import { parseFlags } from '../flags.js'

export const summary = 'validate an upstreams.yaml without starting anything'
export const usage = 'switchyard check [FILE]'

export async function run(argv: string[]): Promise<number> {
  const { positionals } = parseFlags(argv, {}, usage, true)
  const file = positionals[0] ?? 'upstreams.yaml'
  try {
    const c = loadConfigFile(file)
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
