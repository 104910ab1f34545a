import { dirname } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { Counter, type Registry } from 'prom-client'
import type { Config, ListenerConfig } from '../config/schema.js'
import { ConnectionDrain, type DrainResult } from '../control/drain.js'
import { StartupError, describeListenError } from '../control/lifecycle.js'
import { buildProxyServer, listenerServer } from '../routing/proxy-server.js'
import type { ProxyDeps } from '../routing/proxy-plugin.js'
import { CertificateStore } from '../tls/certificate-store.js'
import { createTlsMetrics, type TlsMetrics } from '../tls/tls-metrics.js'
import { Http2Sessions, type Http2SessionMetrics } from './http2-sessions.js'
import { listenerInfo, type ListenerInfo } from './listener-info.js'
import { L4Listeners } from '../l4/l4-listeners.js'

/** One bound (or about to be bound) proxy listener. */
export interface ProxyListener {
  /** Its index in `listen`. */
  readonly index: number
  readonly config: ListenerConfig
  readonly info: ListenerInfo
  readonly fastify: FastifyInstance
  readonly certificates: CertificateStore | undefined
  readonly drain: ConnectionDrain
  readonly sessions: Http2Sessions
  /** The URL it listens on, once listening (http://127.0.0.1:8080, https://[::1]:8443). */
  url: string | undefined
}

/**
 * Every proxy listener of the process (`listen`): the http ones, each a Fastify instance on its
 * own server running the same pipeline (plain HTTP/1.1 (+ h2c), TLS with HTTP/2 and HTTP/1.1 by
 * ALPN), and the tcp and udp ones (src/l4), which send everything to a pool.
 */
export class ProxyListeners {
  /** `all` holds the http listeners only; `l4` the tcp and udp ones. */
  private constructor(readonly all: readonly ProxyListener[], readonly l4: L4Listeners) {}

  static async create(config: Config, deps: ProxyDeps, logger: Logger, registry: Registry, configPath: string | undefined): Promise<ProxyListeners> {
    const h2metrics = createHttp2Metrics(registry)
    const tlsMetrics: TlsMetrics | undefined = config.listen.some((l) => l.tls !== undefined) ? createTlsMetrics(registry) : undefined
    const out: ProxyListener[] = []
    try {
      for (const [index, l] of config.listen.entries()) {
        if (l.protocol === 'tcp' || l.protocol === 'udp') continue
        const info = listenerInfo(l)
        const certificates = l.tls === undefined || tlsMetrics === undefined
          ? undefined
          : await CertificateStore.create(l.tls, { listener: info.name, configDir: configPath === undefined ? process.cwd() : dirname(configPath), logger: logger.child({ component: 'tls', listener: info.name }), metrics: tlsMetrics })
        try {
          const limits = config.limits
          const sessions = new Http2Sessions(info.name, {
            maxResets: limits.http2.max_resets,
            resetWindowMs: limits.http2.reset_window_ms,
            idleMs: limits.keep_alive_timeout_ms
          }, h2metrics, logger)
          const fastify = await buildProxyServer(config, deps, logger, { config: l, info, tls: certificates, onSession: sessions.add })
          const server = listenerServer(fastify)
          certificates?.attach(server as never)
          out.push({ index, config: l, info, fastify, certificates, drain: new ConnectionDrain(server, undefined, sessions), sessions, url: undefined })
        } catch (err) {
          certificates?.close()
          throw err
        }
      }
    } catch (err) {
      for (const l of out) { l.certificates?.close(); await l.fastify.close() }
      throw err
    }
    return new ProxyListeners(out, L4Listeners.create(config, deps.runtime, registry, logger))
  }

  /** The first listener (the one tests and the single-listener setups talk to). */
  get primary(): ProxyListener {
    return this.all[0]
  }

  /**
   * Binds every listener; on a failure the ones already bound are closed and a StartupError
   * names the listener. `override` binds elsewhere (tests: 127.0.0.1, port 0).
   */
  async listen(override?: { host?: string; port?: number }): Promise<string[]> {
    const urls: { index: number; url: string }[] = []
    for (const l of this.l4.all) urls.push({ index: l.index, url: await this.l4.listen(l, override) })
    for (const l of this.all) {
      const host = override?.host ?? l.config.host
      const port = override?.port ?? l.config.port
      try {
        const addr = await l.fastify.listen({ host, port })
        l.url = l.info.scheme === 'https' ? addr.replace(/^http:/, 'https:') : addr
        urls.push({ index: l.index, url: l.url })
      } catch (err) {
        throw new StartupError(describeListenError(err, l.config.name === undefined ? 'proxy listener' : `proxy listener ${l.config.name}`, host, port), err)
      }
    }
    return urls.sort((a, b) => a.index - b.index).map((u) => u.url)
  }

  /** Reads every TLS listener's certificates again (a reload); a bad file keeps the old ones and throws. */
  async reloadCertificates(next: Config): Promise<void> {
    const errors: Error[] = []
    for (const l of this.all) {
      const tls = next.listen[l.index]?.tls
      if (l.certificates === undefined || tls === undefined) continue
      try {
        await l.certificates.reload(tls)
      } catch (err) {
        errors.push(err as Error)
      }
    }
    if (errors.length > 0) throw new Error(errors.map((e) => e.message).join('; '))
  }

  /** Open client connections over all listeners (udp sessions included). */
  get open(): number {
    return this.all.reduce((n, l) => n + l.drain.open, 0) + this.l4.open
  }

  /** The graceful stop of every listener at once (control/drain.ts; tcp tunnels run to the deadline). */
  async drain(deadlineMs: number): Promise<DrainResult> {
    const results = await Promise.all([...this.all.map((l) => l.drain.drain(deadlineMs)), this.l4.drain(deadlineMs)])
    return { forced: results.reduce((n, r) => n + r.forced, 0) }
  }

  async close(): Promise<void> {
    await this.l4.close()
    for (const l of this.all) {
      l.certificates?.close()
      l.sessions.destroyAll()
      await l.fastify.close()
    }
  }
}

function createHttp2Metrics(registry: Registry): Http2SessionMetrics {
  return {
    sessions: new Counter({ name: 'switchyard_http2_sessions_total', help: 'HTTP/2 connections accepted, by listener.', labelNames: ['listener'], registers: [registry] }),
    closed: new Counter({ name: 'switchyard_http2_sessions_closed_total', help: 'HTTP/2 connections the proxy closed: idle, shutdown, or rapid_reset (a client cancelling streams faster than limits.http2 allows).', labelNames: ['listener', 'reason'], registers: [registry] })
  }
}
