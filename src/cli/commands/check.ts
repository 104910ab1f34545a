import { dirname } from 'node:path'
import { ConfigError, loadConfigFile } from '../../config/load.js'
import { checkListenerTls } from '../../tls/check.js'
import { parseFlags } from '../flags.js'

export const summary = 'validate an upstreams.yaml without starting anything'
export const usage = 'switchyard check [FILE]'

export async function run(argv: string[]): Promise<number> {
  const { positionals } = parseFlags(argv, {}, usage, true)
  const file = positionals[0] ?? 'upstreams.yaml'
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
