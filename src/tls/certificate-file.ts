/**
 * One certificate entry read from disk and checked: both files readable and PEM, the key
 * matching the certificate, the names it answers, a secure context ready to serve.
 */
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto'
import { createSecureContext, type SecureContext, type SecureVersion } from 'node:tls'
import type { TlsCertificateConfig } from '../config/schema.js'
import { TlsConfigError, type TlsFileRole } from './tls-config-error.js'

export interface LoadedCertificate {
  /** Resolved path of the certificate file, or `self-signed`. */
  certFile: string
  keyFile: string
  /** PEM text: the certificate and its intermediates, and the key. */
  cert: string
  key: string
  /** The names SNI picks it by, lower case (exact or `*.domain`). */
  names: string[]
  notBefore: Date
  notAfter: Date
  /** Of the leaf certificate, as node:crypto prints them. */
  serialNumber: string
  fingerprint256: string
  context: SecureContext
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/
const KEY_BLOCK = /-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----/

/** Relative paths are read from the config file's directory, so a config moves with its certs. */
export function resolveTlsPath(file: string, configDir: string | undefined): string {
  return resolve(configDir ?? process.cwd(), file)
}

/** Reads and checks one entry; throws the first problem (the cert's before the key's). */
export async function loadCertificate(entry: TlsCertificateConfig, opts: { configDir?: string; minVersion: SecureVersion }): Promise<LoadedCertificate> {
  const result = await inspectCertificate(entry, opts)
  if ('errors' in result) throw result.errors[0]
  return result.loaded
}

/**
 * Reads and checks one entry, collecting the problems of both files (a `switchyard check`
 * should name a missing certificate and a broken key together, not one per run).
 */
export async function inspectCertificate(entry: TlsCertificateConfig, opts: { configDir?: string; minVersion: SecureVersion }): Promise<{ loaded: LoadedCertificate } | { errors: TlsConfigError[] }> {
  const certFile = resolveTlsPath(entry.cert, opts.configDir)
  const keyFile = resolveTlsPath(entry.key, opts.configDir)
  const [cert, key] = await Promise.all([attempt(() => readPem(certFile, 'cert')), attempt(() => readPem(keyFile, 'key'))])
  const leaf = cert instanceof TlsConfigError ? cert : await attempt(async () => parseLeaf(cert, certFile))
  const privateKey = key instanceof TlsConfigError ? key : await attempt(async () => parseKey(key, keyFile))
  const errors = [leaf, privateKey].filter((r): r is TlsConfigError => r instanceof TlsConfigError)
  if (errors.length > 0) return { errors }
  const loaded = await attempt(async () => pairUp({ cert: cert as string, key: key as string, leaf: leaf as X509Certificate, privateKey: privateKey as KeyObject, certFile, keyFile, names: entry.names, minVersion: opts.minVersion }))
  return loaded instanceof TlsConfigError ? { errors: [loaded] } : { loaded }
}

/** Checks a certificate/key pair given as PEM text; the file names only label the errors. */
export function certificateFromPem(p: { cert: string; key: string; certFile: string; keyFile: string; names?: readonly string[]; minVersion: SecureVersion }): LoadedCertificate {
  return pairUp({ ...p, leaf: parseLeaf(p.cert, p.certFile), privateKey: parseKey(p.key, p.keyFile) })
}

function pairUp(p: { cert: string; key: string; leaf: X509Certificate; privateKey: KeyObject; certFile: string; keyFile: string; names?: readonly string[]; minVersion: SecureVersion }): LoadedCertificate {
  const { leaf } = p
  if (!leaf.checkPrivateKey(p.privateKey)) {
    throw new TlsConfigError(`tls key ${p.keyFile} does not match certificate ${p.certFile}`, { file: p.keyFile, role: 'key' })
  }
  let context: SecureContext
  try {
    // The same minVersion as the server's own context: OpenSSL fixes the version range from
    // the default context, and a context SNI switches to must not promise a different one.
    context = createSecureContext({ cert: p.cert, key: p.key, minVersion: p.minVersion })
  } catch (err) {
    // Intermediates after the leaf are parsed here first (a broken second block, for one).
    throw new TlsConfigError(`tls certificate ${p.certFile}: cannot be served with key ${p.keyFile} (${reasonOf(err)})`, { file: p.certFile, role: 'cert', cause: err })
  }
  return {
    certFile: p.certFile,
    keyFile: p.keyFile,
    cert: p.cert,
    key: p.key,
    names: (p.names ?? namesOf(leaf)).map((n) => n.toLowerCase()),
    notBefore: parseX509Date(leaf.validFrom),
    notAfter: parseX509Date(leaf.validTo),
    serialNumber: leaf.serialNumber,
    fingerprint256: leaf.fingerprint256,
    context
  }
}

/** The value, or the TlsConfigError it threw (anything else is a bug and propagates). */
async function attempt<T>(fn: () => Promise<T>): Promise<T | TlsConfigError> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof TlsConfigError) return err
    throw err
  }
}

async function readPem(file: string, role: TlsFileRole): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? reasonOf(err)
    throw new TlsConfigError(`${label(role)} ${file}: cannot read file (${code})`, { file, role, cause: err })
  }
}

function parseLeaf(pem: string, file: string): X509Certificate {
  const block = CERT_BLOCK.exec(pem)
  if (block === null) {
    const hint = KEY_BLOCK.test(pem) ? ': it holds a private key (are cert and key swapped?)' : ''
    throw new TlsConfigError(`tls certificate ${file}: not a PEM certificate (no -----BEGIN CERTIFICATE----- block${hint})`, { file, role: 'cert' })
  }
  try {
    return new X509Certificate(block[0])
  } catch (err) {
    throw new TlsConfigError(`tls certificate ${file}: cannot parse the certificate (${reasonOf(err)})`, { file, role: 'cert', cause: err })
  }
}

function parseKey(pem: string, file: string): KeyObject {
  const block = KEY_BLOCK.exec(pem)
  if (block === null) {
    const hint = CERT_BLOCK.test(pem) ? ': it holds a certificate (are cert and key swapped?)' : ''
    throw new TlsConfigError(`tls key ${file}: not a PEM private key (no -----BEGIN PRIVATE KEY----- block${hint})`, { file, role: 'key' })
  }
  try {
    return createPrivateKey(pem)
  } catch (err) {
    const encrypted = block[1] === 'ENCRYPTED ' || (err as { code?: string }).code === 'ERR_MISSING_PASSPHRASE'
    const message = encrypted ? 'the key is encrypted with a passphrase, which is not supported: decrypt it (openssl pkey -in key.pem -out plain.pem)' : `cannot parse the private key (${reasonOf(err)})`
    throw new TlsConfigError(`tls key ${file}: ${message}`, { file, role: 'key', cause: err })
  }
}

/**
 * The DNS names of subjectAltName, else the subject's CN (clients ignore the CN when a SAN is
 * present, RFC 6125 section 6.4.4, so we pick by the same names they check).
 */
export function namesOf(cert: X509Certificate): string[] {
  const san = cert.subjectAltName
  if (san !== undefined) {
    const dns: string[] = []
    // Node quotes a value holding a separator as a JSON string (CVE-2021-44532).
    for (const m of san.matchAll(/(?:^|, )DNS:("(?:[^"\\]|\\.)*"|[^,]*)/g)) {
      dns.push(m[1].startsWith('"') ? (JSON.parse(m[1]) as string) : m[1])
    }
    if (dns.length > 0) return dns
  }
  const cn = /^CN=(.*)$/m.exec(cert.subject)
  return cn === null ? [] : [cn[1]]
}

/** node:crypto prints validity as `Dec  3 04:30:24 2027 GMT`, which Date.parse reads. */
function parseX509Date(text: string): Date {
  return new Date(Date.parse(text))
}

function label(role: TlsFileRole): string {
  return role === 'cert' ? 'tls certificate' : 'tls key'
}

/** OpenSSL messages carry `error:<code>:<library>:<function>:` before the readable reason. */
function reasonOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  const openssl = /error:[0-9A-F]+:[^:]*:[^:]*:([^:\n]+)/.exec(message)
  return openssl !== null ? openssl[1].trim() : message.split('\n')[0]
}
