import { basename, dirname, resolve as resolvePath } from 'node:path'
import { watch } from 'node:fs'
import cluster from 'node:cluster'
import { ConfigError, loadConfigFile } from '../../config/load.js'
import { createLogger, startServer } from '../../server.js'
import { runPrimary, runWorker, workerCount } from '../../cluster.js'
import { parseFlags } from '../flags.js'

export const summary = 'start the proxy, its admin listener and its sidecars'
export const usage = 'switchyard start [--config upstreams.yaml] [--watch]'

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    config: { type: 'string', short: 'c', default: process.env.SWITCHYARD_CONFIG ?? 'upstreams.yaml' },
    watch: { type: 'boolean', default: false }
  }, usage)
  const configPath = String(values.config)
  let server: { shutdown(reason: string): Promise<void>; reload(): Promise<unknown> }
  try {
    if (cluster.isWorker) {
      const w = await runWorker(configPath, createLogger(loadConfigFile(configPath)))
      server = { shutdown: w.shutdown, reload: async () => undefined }
    } else {
      const config = loadConfigFile(configPath)
      const logger = createLogger(config)
      if (workerCount(config) > 1) {
        server = await runPrimary(configPath, config, logger)
      } else {
        const s = await startServer(configPath, logger)
        server = { shutdown: s.shutdown, reload: () => s.app.reload() }
      }
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchyard: ${err.message}\n`)
      return 1
    }
    const e = err as NodeJS.ErrnoException
    process.stderr.write(`switchyard: cannot start: ${e.code === 'EADDRINUSE' ? `address in use (${e.message})` : e.message}\n`)
    return 1
  }
  return await new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      void server.shutdown(signal).then(() => resolve(0), () => resolve(1))
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
    // SIGHUP: reload upstreams.yaml; a bad file is logged and the running config stays.
    process.on('SIGHUP', () => { void server.reload() })
    if (values.watch === true) {
      // Editors save in several writes (or by rename): wait for the file to settle.
      let t: NodeJS.Timeout | undefined
      const file = resolvePath(String(values.config))
      // Watch the folder, not the file: a save by rename would end a watch on the file itself.
      watch(dirname(file), (_event, name) => {
        if (name !== basename(file)) return
        clearTimeout(t)
        t = setTimeout(() => { void server.reload() }, 250)
      }).unref()
    }
  })
}
