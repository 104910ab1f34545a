/**
 * Helpers of the TLS tests (tap runs only *.test.js): certificates made in process into a temp
 * directory, a TLS echo server on port 0, a client handshake, metric reads, polling.
 */
import { X509Certificate } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, createServer, type ConnectionOptions, type PeerCertificate, type Server, type TLSSocket } from 'node:tls'
import type { Socket } from 'node:net'
import { pino, type Logger } from 'pino'
import { Registry } from 'prom-client'
import { generate } from 'selfsigned'
import type { ListenerTlsConfig } from '../../src/config/schema.js'
import { CertificateStore } from '../../src/tls/certificate-store.js'
import { createTlsMetrics, type TlsMetrics } from '../../src/tls/tls-metrics.js'

export type Teardown = { teardown(fn: () => unknown): void }

/** A temp directory under os.tmpdir(), removed in teardown. */
export async function certDir(t: Teardown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-tls-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

export interface TestPair {
  cert: string
  key: string
  certPem: string
  keyPem: string
  fingerprint256: string
  notAfter: Date
}

/**
 * A self-signed certificate for `names` (SAN DNS; `cnOnly` leaves the SAN out) written to
 * `<dir>/<base>.pem` and `<base>.key`.
 */
export async function writePair(dir: string, base: string, names: string[], opts: { notBefore?: Date; notAfter?: Date; cnOnly?: boolean } = {}): Promise<TestPair> {
  const pems = await generate([{ name: 'commonName', value: names[0] }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notBeforeDate: opts.notBefore,
    notAfterDate: opts.notAfter,
    extensions: opts.cnOnly === true
      ? [{ name: 'basicConstraints', cA: false }]
      : [{ name: 'basicConstraints', cA: false }, { name: 'subjectAltName', altNames: names.map((value) => ({ type: 2 as const, value })) }]
  })
  const pair = { cert: join(dir, `${base}.pem`), key: join(dir, `${base}.key`), certPem: pems.cert, keyPem: pems.private }
  await writeFile(pair.cert, pair.certPem)
  await writeFile(pair.key, pair.keyPem)
  const x509 = new X509Certificate(pems.cert)
  return { ...pair, fingerprint256: x509.fingerprint256, notAfter: new Date(Date.parse(x509.validTo)) }
}

/** A listener `tls` block with the schema's defaults, no watching unless asked. */
export function tlsConfig(over: Partial<ListenerTlsConfig>): ListenerTlsConfig {
  return { certificates: [], self_signed: false, min_version: 'TLSv1.2', alpn: ['h2', 'http/1.1'], watch_interval_ms: 0, ...over }
}

export interface LogLine { level: number; msg: string; file?: string; [k: string]: unknown }

/** A pino logger whose lines are kept for assertions. */
export function recordingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const logger = pino({ level: 'debug' }, { write: (line: string) => { lines.push(JSON.parse(line) as LogLine) } })
  return { logger, lines }
}

export interface StoreRig {
  store: CertificateStore
  registry: Registry
  metrics: TlsMetrics
  lines: LogLine[]
}

/** A store on a fresh registry, closed in teardown. */
export async function createStore(t: Teardown, tls: ListenerTlsConfig, opts: { configDir?: string; listener?: string } = {}): Promise<StoreRig> {
  const registry = new Registry()
  const metrics = createTlsMetrics(registry)
  const { logger, lines } = recordingLogger()
  const store = await CertificateStore.create(tls, { listener: opts.listener ?? 'test', configDir: opts.configDir, logger, metrics })
  t.teardown(() => store.close())
  return { store, registry, metrics, lines }
}

/** Starts `server` on 127.0.0.1 port 0; teardown destroys its connections and closes it. */
export async function listen(t: Teardown, server: Server): Promise<number> {
  const open = new Set<Socket>()
  server.on('connection', (s: Socket) => { open.add(s); s.on('close', () => open.delete(s)) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of open) s.destroy()
    server.close(() => resolve())
  }))
  return (server.address() as { port: number }).port
}

/** A TLS echo server with the store's options, attached to the store. */
export async function echoServer(t: Teardown, store: CertificateStore): Promise<number> {
  const server = createServer(store.serverOptions(), (socket) => {
    socket.on('error', () => {})
    socket.pipe(socket)
  })
  store.attach(server)
  return listen(t, server)
}

/** A finished client handshake (certificates not verified: the tests look at which one came). */
export function handshake(t: Teardown, port: number, opts: ConnectionOptions = {}): Promise<{ socket: TLSSocket; peer: PeerCertificate }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts }, () => resolve({ socket, peer: socket.getPeerCertificate() }))
    socket.once('error', reject)
    t.teardown(() => socket.destroy())
  })
}

/** Writes `text` on an open connection to an echo server and waits for it to come back. */
export function echo(socket: TLSSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = ''
    const onData = (d: Buffer): void => {
      got += d.toString()
      if (got.length >= text.length) { socket.off('data', onData); resolve(got) }
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.write(text)
  })
}

/** The value of one series, or undefined when it does not exist. */
export async function metricValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name)
  if (metric === undefined) throw new Error(`no metric ${name}`)
  const { values } = await metric.get()
  const found = values.find((v) => Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want) && Object.keys(v.labels).length === Object.keys(labels).length)
  return found?.value
}

/** Polls with a deadline (never a fixed sleep). */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}
