import type { Logger } from 'pino'
import { buildApp, type SwitchyardApp } from './app.js'
import { loadConfigFile } from './config/load.js'
import type { Config } from './config/schema.js'
import { createLogger } from './control/logger.js'
import { asStartupError, listenOn } from './control/lifecycle.js'

export { createLogger }

export interface RunningServer {
  app: SwitchyardApp
  /** The first listener's URL. */
  proxyAddress: string
  /** Every listener's URL, in the order of `listen`. */
  proxyAddresses: string[]
  adminAddress: string
  /** Graceful stop: stop accepting, finish in-flight requests up to the deadline, stop sidecars. */
  shutdown(reason: string): Promise<void>
}

/**
 * The single process, all or nothing: build the app, listen on the admin address (/readyz
 * answers 503 meanwhile), spawn the sidecars, listen on the proxy address. If any step fails,
 * everything started so far is stopped and a StartupError says why in one line.
 * /readyz turns 200 once the first round of health checks is also done.
 */
export async function startServer(configPath: string, log?: Logger, config: Config = loadConfigFile(configPath)): Promise<RunningServer> {
  const logger = log ?? createLogger(config)
  let app: SwitchyardApp
  try {
    app = await buildApp(config, { logger, sidecars: true, configPath })
  } catch (err) {
    throw asStartupError(err)
  }
  try {
    const adminAddress = await listenOn(app.admin, 'admin listener', config.admin.host, config.admin.port)
    app.supervisor?.start()
    await app.supervisor?.spawned()
    const urls = await app.listeners.listen()
    app.setReady(true)
    logger.info({ proxy: urls, admin: adminAddress, routes: config.routes.length, pools: Object.keys(config.pools).length }, 'switchyard listening')
    return { app, proxyAddress: urls[0], proxyAddresses: urls, adminAddress, shutdown: (reason) => app.shutdown(reason) }
  } catch (err) {
    await app.close()
    throw asStartupError(err)
  }
}
