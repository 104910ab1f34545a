/**
 * The certificates of one TLS listener: loaded and checked at start, picked by SNI on every
 * handshake, swapped whole on reload or when the files change on disk (certbot, cert-manager),
 * with handshake and expiry metrics. Open connections keep the context they were made with.
 */
import { X509Certificate } from 'node:crypto'
import type { SecureContext, SecureVersion, Server as TlsServer, TLSSocket } from 'node:tls'
import type { Logger } from 'pino'
import type { ListenerTlsConfig } from '../config/schema.js'
import { certificateFromPem, loadCertificate, resolveTlsPath, type LoadedCertificate } from './certificate-file.js'
import { stampFiles } from './file-stamp.js'
import { handshakeFailureReason } from './handshake-failure.js'
import { generateSelfSigned, sharedSelfSigned, SELF_SIGNED_NAMES } from './self-signed.js'
import { SniTable } from './sni-table.js'
import { TlsConfigError } from './tls-config-error.js'
import { HANDSHAKE_FAILURE_REASONS, type TlsMetrics } from './tls-metrics.js'

export { TlsConfigError } from './tls-config-error.js'

/** The `certificate` label and file name of the generated certificate. */
export const SELF_SIGNED = 'self-signed'

/** Spread into http2.createSecureServer / https.createServer / tls.createServer options. */
export interface TlsServerOptions {
  SNICallback: (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void
  /** The default certificate: what a client that sends no SNI gets (one dialing an IP address). */
  key: string
  cert: string
  minVersion: SecureVersion
  ALPNProtocols: string[]
}

/** One served certificate, for logs and the admin API. */
export interface CertificateInfo {
  certificate: string
  names: string[]
  notBefore: Date
  notAfter: Date
  serialNumber: string
  fingerprint256: string
}

export type FileCheckResult = 'unchanged' | 'reloaded' | 'failed'

/** Everything a handshake reads, built whole and replaced by one assignment. */
interface Loaded {
  config: ListenerTlsConfig
  files: LoadedCertificate[]
  selfSigned: LoadedCertificate | undefined
  /** Answers clients without SNI: the first listed certificate, else the self-signed one. */
  primary: LoadedCertificate
  table: SniTable<SecureContext>
  /** stampFiles() of the certificate files, taken before they were read. */
  stamp: string
}

interface Attached {
  onSecure: (socket: TLSSocket) => void
  onFailure: (err: Error, socket: TLSSocket) => void
}

// A generated certificate is kept across reloads unless it is this close to expiring.
const SELF_SIGNED_RENEW_MS = 7 * 86400_000

export class CertificateStore {
  readonly listener: string
  readonly #configDir: string | undefined
  readonly #log: Logger
  readonly #metrics: TlsMetrics
  readonly #servers = new Map<TlsServer, Attached>()
  #state: Loaded
  #published: { listener: string; certificate: string; names: string }[] = []
  #queue: Promise<unknown> = Promise.resolve()
  #timer: NodeJS.Timeout | undefined
  #ticking = false
  /** The stamp of the files when a watched change last failed, so one change logs once. */
  #failedStamp: string | undefined
  #closed = false

  private constructor(state: Loaded, opts: { listener: string; configDir?: string; logger: Logger; metrics: TlsMetrics }) {
    this.listener = opts.listener
    this.#configDir = opts.configDir
    // A caller that already bound the listener would otherwise get every key twice in each line.
    this.#log = 'listener' in opts.logger.bindings() ? opts.logger : opts.logger.child({ component: 'tls', listener: opts.listener })
    this.#metrics = opts.metrics
    this.#state = state
  }

  /** Loads and checks every certificate; throws TlsConfigError naming the file at fault. */
  static async create(tls: ListenerTlsConfig, opts: { listener: string; configDir?: string; logger: Logger; metrics: TlsMetrics }): Promise<CertificateStore> {
    const state = await loadState(tls, opts.configDir, undefined)
    const store = new CertificateStore(state, opts)
    for (const reason of HANDSHAKE_FAILURE_REASONS) opts.metrics.handshakeFailures.inc({ listener: opts.listener, reason }, 0)
    for (const result of ['success', 'error']) opts.metrics.certificateReloads.inc({ listener: opts.listener, result }, 0)
    store.#installed('tls certificates loaded')
    return store
  }

  serverOptions(): TlsServerOptions {
    const { primary, config } = this.#state
    return {
      // Reads the state at handshake time: a reload is seen by the next handshake.
      SNICallback: (servername, cb) => cb(null, this.#state.table.lookup(servername)),
      key: primary.key,
      cert: primary.cert,
      minVersion: config.min_version,
      ALPNProtocols: [...config.alpn]
    }
  }

  /** What is served now, the files in config order, then the self-signed one. */
  certificates(): CertificateInfo[] {
    return served(this.#state).map((c) => ({
      certificate: c.certFile,
      names: [...c.names],
      notBefore: c.notBefore,
      notAfter: c.notAfter,
      serialNumber: c.serialNumber,
      fingerprint256: c.fingerprint256
    }))
  }

  /**
   * Counts the server's handshakes and failures, and takes over its `tlsClientError` so a bad
   * handshake (plain HTTP, a scanner, an old client) costs a counter, never a log line or a throw.
   * A reload installs the new default certificate on every attached server.
   */
  attach(server: TlsServer): void {
    if (this.#servers.has(server)) return
    const listener = this.listener
    const onSecure = (socket: TLSSocket): void => {
      const alpn = socket.alpnProtocol
      this.#metrics.handshakes.inc({ listener, version: socket.getProtocol() ?? 'unknown', alpn: typeof alpn === 'string' && alpn !== '' ? alpn : 'none' })
    }
    const onFailure = (err: Error, socket: TLSSocket): void => {
      const reason = handshakeFailureReason(err)
      this.#metrics.handshakeFailures.inc({ listener, reason })
      this.#log.debug({ reason, code: (err as NodeJS.ErrnoException).code, remote: socket.remoteAddress }, 'tls handshake failed')
      // Node destroys it after the event already; make sure of it whoever else listens.
      socket.destroy()
    }
    server.on('secureConnection', onSecure)
    server.on('tlsClientError', onFailure)
    this.#servers.set(server, { onSecure, onFailure })
  }

  /**
   * Reads `next` (a reloaded config, or the same one) and, when every file is good, serves it.
   * On failure the previous certificates keep serving and the TlsConfigError is thrown.
   * Changes of `alpn` need a new server (ALPN is fixed when the server is made).
   */
  reload(next: ListenerTlsConfig): Promise<void> {
    return this.#serialize(async () => {
      let state: Loaded
      try {
        state = await loadState(next, this.#configDir, this.#state)
      } catch (err) {
        this.#metrics.certificateReloads.inc({ listener: this.listener, result: 'error' })
        this.#log.warn({ err, file: (err as TlsConfigError).file }, `tls certificates not reloaded, the previous ones keep serving: ${(err as Error).message}`)
        throw err
      }
      this.#state = state
      this.#metrics.certificateReloads.inc({ listener: this.listener, result: 'success' })
      this.#installed('tls certificates reloaded')
    })
  }

  /**
   * Reloads when a certificate or key file changed since it was read; the watcher calls this
   * every watch_interval_ms. A new certificate and its key are often written one after the
   * other: until they match, the old pair keeps serving and every later check retries, but a
   * failure is logged and counted once per change of the files, not on every check.
   */
  checkFiles(): Promise<FileCheckResult> {
    return this.#serialize(async () => {
      const current = this.#state
      if (current.files.length === 0) return 'unchanged'
      const stamp = await stampFiles(watchedFiles(current))
      if (stamp === current.stamp) return 'unchanged'
      let state: Loaded
      try {
        state = await loadState(current.config, this.#configDir, current)
      } catch (err) {
        if (stamp !== this.#failedStamp) {
          this.#failedStamp = stamp
          this.#metrics.certificateReloads.inc({ listener: this.listener, result: 'error' })
          this.#log.warn({ err, file: (err as TlsConfigError).file }, `tls certificate files changed but cannot be served (yet), the previous ones keep serving: ${(err as Error).message}`)
        }
        return 'failed'
      }
      this.#state = state
      this.#metrics.certificateReloads.inc({ listener: this.listener, result: 'success' })
      this.#installed('tls certificate files changed: reloaded')
      return 'reloaded'
    })
  }

  /** Stops watching, lets a reload under way finish, detaches from the servers, drops the gauges. */
  async close(): Promise<void> {
    this.#closed = true
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.#queue
    for (const [server, { onSecure, onFailure }] of this.#servers) {
      server.off('secureConnection', onSecure)
      server.off('tlsClientError', onFailure)
    }
    this.#servers.clear()
    for (const labels of this.#published) this.#metrics.certificateExpiry.remove(labels)
    this.#published = []
  }

  /** After #state changed: servers, gauges, watcher, log. */
  #installed(message: string): void {
    const state = this.#state
    this.#failedStamp = undefined
    for (const server of this.#servers.keys()) {
      // The default context answers clients without SNI; setSecureContext swaps it for new
      // connections only (nodejs.org/api/tls.html#serversetsecurecontextoptions).
      server.setSecureContext({ key: state.primary.key, cert: state.primary.cert, minVersion: state.config.min_version })
    }
    if (!this.#closed) {
      for (const labels of this.#published) this.#metrics.certificateExpiry.remove(labels)
      this.#published = served(state).map((c) => ({ listener: this.listener, certificate: c.certFile, names: c.names.join(',') }))
      served(state).forEach((c, i) => this.#metrics.certificateExpiry.set(this.#published[i], Math.floor(c.notAfter.getTime() / 1000)))
      this.#watch()
    }
    const now = Date.now()
    for (const c of state.files) {
      if (c.notAfter.getTime() <= now) this.#log.warn({ file: c.certFile, not_after: c.notAfter.toISOString() }, `tls certificate ${c.certFile} expired at ${c.notAfter.toISOString()}; serving it anyway, clients will reject it`)
      else if (c.notBefore.getTime() > now) this.#log.warn({ file: c.certFile, not_before: c.notBefore.toISOString() }, `tls certificate ${c.certFile} is not valid before ${c.notBefore.toISOString()}; serving it anyway, clients will reject it`)
    }
    this.#log.info({ certificates: served(state).map((c) => ({ certificate: c.certFile, names: c.names, not_after: c.notAfter.toISOString() })) }, message)
  }

  /** (Re)starts the poll of the files' stamps; the timer never keeps the process alive. */
  #watch(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
    const ms = this.#state.config.watch_interval_ms
    if (ms <= 0 || this.#state.files.length === 0) return
    this.#timer = setInterval(() => {
      if (this.#ticking) return
      this.#ticking = true
      this.checkFiles()
        .catch((err: unknown) => this.#log.error({ err }, 'tls certificate file check failed'))
        .finally(() => { this.#ticking = false })
    }, ms)
    this.#timer.unref()
  }

  /** One load at a time, so a watched change and a config reload cannot interleave. */
  #serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn)
    this.#queue = run.catch(() => undefined)
    return run
  }
}

async function loadState(config: ListenerTlsConfig, configDir: string | undefined, previous: Loaded | undefined): Promise<Loaded> {
  if (config.certificates.length === 0 && !config.self_signed) {
    throw new TlsConfigError('tls: no certificates listed and self_signed is off: list certificates (cert and key files) or set self_signed: true')
  }
  const minVersion = config.min_version
  // Stamped before reading: a file replaced while we read stamps differently next check.
  const stamp = await stampFiles(config.certificates.flatMap((c) => [resolveTlsPath(c.cert, configDir), resolveTlsPath(c.key, configDir)]))
  const files: LoadedCertificate[] = []
  // In order, so the error is about the first bad entry, as a reader of the config expects.
  for (const entry of config.certificates) files.push(await loadCertificate(entry, { configDir, minVersion }))
  let selfSigned: LoadedCertificate | undefined
  if (config.self_signed) {
    const kept = previous?.selfSigned
    const fresh = (c: { notAfter: Date }): boolean => c.notAfter.getTime() - Date.now() > SELF_SIGNED_RENEW_MS
    const pems = kept !== undefined && fresh(kept) ? kept : await freshSelfSigned(fresh)
    selfSigned = certificateFromPem({ cert: pems.cert, key: pems.key, certFile: SELF_SIGNED, keyFile: SELF_SIGNED, names: SELF_SIGNED_NAMES, minVersion })
  }
  const primary = files[0] ?? (selfSigned as LoadedCertificate)
  // A name no file covers gets the self-signed certificate when there is one (the schema's
  // "used when no file matches"), else the first listed.
  const fallback = selfSigned ?? primary
  const table = new SniTable([...files, ...(selfSigned === undefined ? [] : [selfSigned])].map((c) => ({ names: c.names, value: c.context })), fallback.context)
  return { config, files, selfSigned, primary, table, stamp }
}

function served(state: Loaded): LoadedCertificate[] {
  return state.selfSigned === undefined ? state.files : [...state.files, state.selfSigned]
}

function watchedFiles(state: Loaded): string[] {
  return state.files.flatMap((c) => [c.certFile, c.keyFile])
}

/** The process's shared self-signed certificate (the same in every worker), or a new one when it is about to expire. */
async function freshSelfSigned(fresh: (c: { notAfter: Date }) => boolean): Promise<{ cert: string; key: string }> {
  const pems = await sharedSelfSigned()
  return fresh({ notAfter: new Date(Date.parse(new X509Certificate(pems.cert).validTo)) }) ? pems : generateSelfSigned()
}
