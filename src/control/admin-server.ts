import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { adminPlugin } from '../admin/admin-plugin.js'
import { isLoopback } from '../admin/loopback.js'
import type { Control } from './control.js'

/** The admin listener over a Control: the same endpoints for one process and a cluster primary. */
export async function buildAdminServer(control: Control, opts: { logger: Logger; host: string; token: () => string | undefined }): Promise<FastifyInstance> {
  const admin = Fastify({ loggerInstance: opts.logger.child({ component: 'admin' }) as unknown as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) })
  await admin.register(adminPlugin, { control, token: opts.token, loopbackOnly: isLoopback(opts.host) })
  return admin
}
