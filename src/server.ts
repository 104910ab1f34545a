import { pino, type Logger } from 'pino'
import { buildApp, type SwitchyardApp } from './app.js'
import { loadConfigFile } from './config/load.js'
import type { Config } from './config/schema.js'

export interface RunningServer {
  app: SwitchyardApp
  proxyAddress: string
  adminAddress: string
  /** Graceful stop: stop accepting, finish in-flight requests up to the deadline, stop sidecars. */
  shutdown(reason: string): Promise<void>
}

export function createLogger(config: Pick<Config, 'logging'>): Logger {
  return pino({ level: config.logging.level, base: { service: 'switchyard' } })
}

/** The process: load the config (throws ConfigError before anything listens), build, listen. */
export async function startServer(configPath: string, log?: Logger): Promise<RunningServer> {
  const config = loadConfigFile(configPath)
  const logger = log ?? createLogger(config)
  const app = await buildApp(config, { logger, sidecars: true, configPath })
  app.supervisor?.start()
  const adminAddress = await app.admin.listen({ host: config.admin.host, port: config.admin.port })
  const proxyAddress = await app.proxy.listen({ host: config.listen.host, port: config.listen.port })
  app.setReady(true)
  logger.info({ proxy: proxyAddress, admin: adminAddress, routes: config.routes.length, pools: Object.keys(config.pools).length }, 'switchyard listening')

  let closing: Promise<void> | undefined
  const shutdown = (reason: string): Promise<void> => {
    closing ??= (async () => {
      logger.info({ reason }, 'shutting down: draining in-flight requests')
      app.setReady(false)
      const deadline = config.limits.shutdown_timeout_ms
      let timer: NodeJS.Timeout | undefined
      const forced = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          logger.warn({ deadline_ms: deadline }, 'shutdown deadline passed; closing remaining connections')
          app.proxy.server.closeAllConnections()
          resolve()
        }, deadline)
      })
      await Promise.race([app.close(), forced])
      clearTimeout(timer)
      await app.supervisor?.stop()
      logger.info('stopped')
    })()
    return closing
  }
  return { app, proxyAddress, adminAddress, shutdown }
}
