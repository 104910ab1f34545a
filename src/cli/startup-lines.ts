/**
 * What `switchyard start` says when it starts, the same in one process and in workers mode
 * (where the primary says it, once): the version and the config file first, then, once bound,
 * one line per proxy listener with its URL and protocols, and the admin listener's URL.
 */
import cluster, { type Address, type Worker } from 'node:cluster'
import { resolve as resolvePath } from 'node:path'
import type { Logger } from 'pino'
import type { ListenerConfig } from '../config/schema.js'
import { listenerLabel } from '../listeners/listener-info.js'
import { packageVersion } from './version.js'

export interface BoundListener {
  /** The listener's name, else host:port (its metrics and log label). */
  name: string
  url: string
  /** What a client may speak there: http/1.1, h2c, h2 (TLS listeners: their ALPN list). */
  protocols: string[]
  /** Plain listeners that only redirect to https://. */
  redirect_https_port?: number
}

/** The first line: who is starting, from which file, in how many processes. */
export function logStarting(logger: Logger, o: { configPath: string; workers: number; format: 'json' | 'pretty' }): void {
  const version = packageVersion()
  const config = resolvePath(o.configPath)
  logger.info({ version, node: process.version, config, workers: o.workers, log_format: o.format }, `switchyard ${version} starting with ${config}`)
}

export function listenerProtocols(l: ListenerConfig): string[] {
  if (l.mode === 'forward') return ['forward proxy', 'http/1.1', 'CONNECT']
  if (l.tls !== undefined) return [...l.tls.alpn]
  return l.h2c ? ['http/1.1', 'h2c'] : ['http/1.1']
}

const WILDCARDS = new Set(['0.0.0.0', '::', '[::]'])

/**
 * A listener on every interface is shown as such (http://0.0.0.0:8080), not as the one address
 * Fastify picks for its own message, so both modes print the same URL.
 */
export function shownUrl(host: string, url: string): string {
  // Not new URL(url).port: that is '' for the scheme's default port.
  const m = /^([a-z]+:)\/\/.*:(\d+)\/?$/.exec(url)
  if (!WILDCARDS.has(host) || m === null) return url
  return `${m[1]}//${host.includes(':') ? `[${host.replace(/^\[|\]$/g, '')}]` : host}:${m[2]}`
}

/** The listeners of `listen` with the URLs they are bound to, in the same order. */
export function boundListeners(listen: readonly ListenerConfig[], urls: readonly string[]): BoundListener[] {
  return listen.flatMap((l, i) => urls[i] === undefined ? [] : [{
    name: listenerLabel(l),
    url: shownUrl(l.host, urls[i]),
    protocols: listenerProtocols(l),
    ...(l.tls === undefined && l.redirect_https !== undefined ? { redirect_https_port: l.redirect_https.port } : {})
  }])
}

/** One line per proxy listener, then the admin listener's. */
export function logListening(logger: Logger, listeners: readonly BoundListener[], adminUrl: string): void {
  for (const l of listeners) {
    const redirect = l.redirect_https_port === undefined ? '' : `; redirects to https:// on port ${l.redirect_https_port}`
    logger.info({ listener: l.name, url: l.url, protocols: l.protocols, ...(l.redirect_https_port === undefined ? {} : { redirect_https_port: l.redirect_https_port }) },
      `listening on ${l.url} (${l.protocols.join(', ')}${redirect})`)
  }
  logger.info({ listener: 'admin', url: adminUrl }, `admin listening on ${adminUrl}`)
}

/** The URL of a worker's bound address (port 0 resolved by then), with the listener's scheme. */
export function addressUrl(l: ListenerConfig, a: Address): string {
  const host = a.addressType === 6 || (a.address ?? '').includes(':') ? `[${a.address}]` : (a.address ?? l.host)
  return `${l.tls === undefined ? 'http' : 'https'}://${host}:${a.port}`
}

/**
 * Workers mode: the workers bind the listeners, in the order of `listen`, and the primary hears
 * each bind (cluster 'listening'). Resolves with the URLs of the first worker to have bound
 * them all; stop() stops listening (and leaves the promise pending when it never happened).
 */
export function watchWorkerListeners(listen: readonly ListenerConfig[]): { bound: Promise<string[]>; stop(): void } {
  const seen = new Map<number, string[]>()
  let onListening!: (worker: Worker, address: Address) => void
  const stop = (): void => { cluster.off('listening', onListening) }
  const bound = new Promise<string[]>((resolve) => {
    onListening = (worker, address) => {
      const urls = seen.get(worker.id) ?? []
      seen.set(worker.id, urls)
      const l = listen[urls.length]
      if (l === undefined) return
      urls.push(addressUrl(l, address))
      if (urls.length === listen.length) {
        stop()
        resolve(urls)
      }
    }
    cluster.on('listening', onListening)
  })
  return { bound, stop }
}
