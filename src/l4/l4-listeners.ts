/**
 * Every `protocol: tcp` and `protocol: udp` listener of the process. Each one reads its pool
 * and settings from the live runtime per connection (tcp) or new session (udp), so a reload
 * applies to new traffic while established tunnels and sessions carry on with the pool and
 * member they started with.
 */
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { Config, ListenerConfig } from '../config/schema.js'
import { StartupError, describeListenError } from '../control/lifecycle.js'
import { listenerLabel } from '../listeners/listener-info.js'
import type { Runtime } from '../routing/runtime.js'
import { createL4Metrics } from './l4-metrics.js'
import { TcpProxy, type TcpTarget } from './tcp-proxy.js'
import { UdpProxy, type UdpTarget } from './udp-proxy.js'

export interface L4Listener {
  /** Its index in `listen`. */
  readonly index: number
  readonly config: ListenerConfig
  readonly name: string
  readonly protocol: 'tcp' | 'udp'
  readonly proxy: TcpProxy | UdpProxy
  /** tcp://127.0.0.1:12100 or udp://127.0.0.1:12101, once listening. */
  url: string | undefined
  /** The port bound, once listening. */
  port: number | undefined
}

export class L4Listeners {
  private constructor(readonly all: readonly L4Listener[]) {}

  static create(config: Config, runtime: () => Runtime, registry: Registry, logger: Logger): L4Listeners {
    const out: L4Listener[] = []
    const l4 = config.listen.map((l, index) => ({ l, index })).filter(({ l }) => l.protocol === 'tcp' || l.protocol === 'udp')
    if (l4.length === 0) return new L4Listeners(out)
    const metrics = createL4Metrics(registry)
    for (const { l, index } of l4) {
      const name = listenerLabel(l)
      const log = logger.child({ component: 'l4', listener: name })
      // The listener as the running config has it now (reloads change pool and settings).
      const current = (): ListenerConfig | undefined => runtime().config.listen[index]
      const poolOf = (c: ListenerConfig | undefined) => (c?.pool === undefined ? undefined : runtime().pools.get(c.pool))
      if (l.protocol === 'tcp') {
        const target = (): TcpTarget | undefined => {
          const c = current()
          const pool = poolOf(c)
          return pool === undefined || c?.tcp === undefined ? undefined : { pool, settings: c.tcp }
        }
        out.push({ index, config: l, name, protocol: 'tcp', proxy: new TcpProxy({ name, target, metrics, log }), url: undefined, port: undefined })
      } else {
        const target = (): UdpTarget | undefined => {
          const c = current()
          const pool = poolOf(c)
          return pool === undefined || c?.udp === undefined ? undefined : { pool, settings: c.udp }
        }
        out.push({ index, config: l, name, protocol: 'udp', proxy: new UdpProxy({ name, target, metrics, log }), url: undefined, port: undefined })
      }
    }
    return new L4Listeners(out)
  }

  /** Binds one listener (`override`: tests bind 127.0.0.1 port 0); a failure names it. */
  async listen(l: L4Listener, override?: { host?: string; port?: number }): Promise<string> {
    const host = override?.host ?? l.config.host
    const port = override?.port ?? l.config.port
    try {
      const a = await l.proxy.listen(host, port)
      l.port = a.port
      l.url = `${l.protocol}://${host.includes(':') ? `[${host}]` : host}:${a.port}`
      return l.url
    } catch (err) {
      throw new StartupError(describeListenError(err, `${l.protocol} listener ${l.name}`, host, port), err)
    }
  }

  /** Open tcp connections and udp sessions. */
  get open(): number {
    return this.all.reduce((n, l) => n + (l.proxy instanceof TcpProxy ? l.proxy.connections : l.proxy.sessionCount), 0)
  }

  /** Stop accepting; tcp tunnels run until the deadline, udp sessions until they go quiet. */
  async drain(deadlineMs: number): Promise<{ forced: number }> {
    const r = await Promise.all(this.all.map((l) => l.proxy.drain(deadlineMs)))
    return { forced: r.reduce((n, x) => n + x.forced, 0) }
  }

  async close(): Promise<void> {
    await Promise.all(this.all.map((l) => l.proxy.close()))
  }
}
