/**
 * CertificateStore against real TLS handshakes on 127.0.0.1: which certificate SNI picks,
 * the self-signed one, the errors a bad file gives, the expiry gauge.
 */
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { TlsConfigError } from '../../src/tls/certificate-store.js'
import { certDir, createStore, echoServer, handshake, metricValue, tlsConfig, writePair, type Teardown } from './tls-fixtures.js'

const EXPIRY = 'switchyard_tls_certificate_expiry_timestamp_seconds'

/** The fingerprint of the certificate a handshake with `servername` (none: no SNI) gets. */
function fingerprintAt(t: Teardown, port: number) {
  return async (servername?: string): Promise<string> => (await handshake(t, port, servername === undefined ? {} : { servername })).peer.fingerprint256
}

t.test('SNI picks the exact name, then a wildcard, else the first listed', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const b = await writePair(dir, 'b', ['*.b.test'])
  const c = await writePair(dir, 'c', ['c.test'], { cnOnly: true })
  const { store } = await createStore(t, tlsConfig({ certificates: [a, b, c].map(({ cert, key }) => ({ cert, key })) }))
  const fp = fingerprintAt(t, await echoServer(t, store))
  t.equal(await fp('a.test'), a.fingerprint256, 'exact name')
  t.equal(await fp('A.Test'), a.fingerprint256, 'case-insensitive')
  t.equal(await fp('x.b.test'), b.fingerprint256, 'wildcard')
  t.equal(await fp('c.test'), c.fingerprint256, 'the CN of a certificate without subjectAltName')
  t.equal(await fp('y.x.b.test'), a.fingerprint256, 'a wildcard covers one label only: the first listed answers')
  t.equal(await fp('other.test'), a.fingerprint256, 'a name no certificate covers: the first listed')
  t.equal(await fp(), a.fingerprint256, 'no SNI: the first listed')
  t.same(store.certificates().map((i) => i.names), [['a.test'], ['*.b.test'], ['c.test']])
})

t.test('names in the config replace the names in the certificate', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const b = await writePair(dir, 'b', ['b.test'])
  const { store } = await createStore(t, tlsConfig({ certificates: [{ cert: b.cert, key: b.key }, { cert: a.cert, key: a.key, names: ['Alias.test', '*.wild.test'] }] }))
  const fp = fingerprintAt(t, await echoServer(t, store))
  t.equal(await fp('alias.test'), a.fingerprint256)
  t.equal(await fp('x.wild.test'), a.fingerprint256)
  t.equal(await fp('a.test'), b.fingerprint256, 'the name in the certificate is no longer used')
})

t.test('self_signed alone: a valid certificate for localhost, 127.0.0.1 and ::1', async (t) => {
  const { store, registry } = await createStore(t, tlsConfig({ self_signed: true }))
  const port = await echoServer(t, store)
  const { cert } = store.serverOptions()
  const x509 = new X509Certificate(cert)
  t.match(x509.subjectAltName, /DNS:localhost/)
  t.match(x509.subjectAltName, /IP Address:127\.0\.0\.1/)
  t.match(x509.subjectAltName, /IP Address:(0:0:0:0:0:0:0:1|::1)/)
  const days = (Date.parse(x509.validTo) - Date.now()) / 86400_000
  t.ok(days > 360 && days < 367, `valid about a year (${days.toFixed(1)} days)`)
  // Verified for real: SHA-256 signature, SAN matching what the client dialed.
  const byIp = await handshake(t, port, { rejectUnauthorized: true, ca: [cert] })
  t.equal(byIp.socket.authorized, true, 'trusted for 127.0.0.1 (no SNI)')
  const byName = await handshake(t, port, { rejectUnauthorized: true, ca: [cert], servername: 'localhost' })
  t.equal(byName.socket.authorized, true, 'trusted for localhost')
  t.equal(await metricValue(registry, EXPIRY, { listener: 'test', certificate: 'self-signed', names: 'localhost' }), Math.floor(Date.parse(x509.validTo) / 1000))
})

t.test('self_signed beside files: it answers the names no file covers; no SNI gets the first file', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const { store } = await createStore(t, tlsConfig({ certificates: [{ cert: a.cert, key: a.key }], self_signed: true }))
  const fp = fingerprintAt(t, await echoServer(t, store))
  const selfSigned = store.certificates().find((c) => c.certificate === 'self-signed')
  t.ok(selfSigned)
  t.equal(await fp('a.test'), a.fingerprint256)
  t.equal(await fp('other.test'), selfSigned?.fingerprint256)
  t.equal(await fp('localhost'), selfSigned?.fingerprint256)
  t.equal(await fp(), a.fingerprint256)
})

t.test('relative paths are read from the config directory', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const { store } = await createStore(t, tlsConfig({ certificates: [{ cert: 'a.pem', key: './a.key' }] }), { configDir: dir })
  t.equal(store.certificates()[0].certificate, a.cert)
  t.equal(store.certificates()[0].fingerprint256, a.fingerprint256)
})

t.test('a bad file is a TlsConfigError naming it', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const b = await writePair(dir, 'b', ['b.test'])
  const junk = join(dir, 'junk.pem')
  await writeFile(junk, 'hello, not a certificate\n')
  const missing = join(dir, 'missing.pem')
  const cases: { what: string; cert: string; key: string; file: string; role: 'cert' | 'key'; message: string | RegExp }[] = [
    { what: 'a missing certificate', cert: missing, key: a.key, file: missing, role: 'cert', message: `tls certificate ${missing}: cannot read file (ENOENT)` },
    { what: 'a missing key', cert: a.cert, key: missing, file: missing, role: 'key', message: `tls key ${missing}: cannot read file (ENOENT)` },
    { what: 'a directory', cert: dir, key: a.key, file: dir, role: 'cert', message: `tls certificate ${dir}: cannot read file (EISDIR)` },
    { what: 'a certificate that is not PEM', cert: junk, key: a.key, file: junk, role: 'cert', message: /^tls certificate .*junk\.pem: not a PEM certificate/ },
    { what: 'a key that is not PEM', cert: a.cert, key: junk, file: junk, role: 'key', message: /^tls key .*junk\.pem: not a PEM private key/ },
    { what: 'cert and key swapped', cert: a.key, key: a.cert, file: a.key, role: 'cert', message: /a\.key: not a PEM certificate .*are cert and key swapped\?/ },
    { what: 'a key of another certificate', cert: a.cert, key: b.key, file: b.key, role: 'key', message: `tls key ${b.key} does not match certificate ${a.cert}` }
  ]
  for (const c of cases) {
    const err = await createStore(t, tlsConfig({ certificates: [{ cert: c.cert, key: c.key }] })).then(() => undefined, (e: unknown) => e)
    t.type(err, TlsConfigError, c.what)
    const e = err as TlsConfigError
    t.equal(e.file, c.file, `${c.what}: names the file`)
    t.equal(e.role, c.role, `${c.what}: ${c.role}`)
    if (typeof c.message === 'string') t.equal(e.message, c.message, c.what)
    else t.match(e.message, c.message, c.what)
  }
  const none = await createStore(t, tlsConfig({ certificates: [] })).then(() => undefined, (e: unknown) => e)
  t.type(none, TlsConfigError, 'no certificates and no self_signed')
  t.match((none as Error).message, /self_signed/)
})

t.test('an expired certificate is served with a warning; the gauge holds its notAfter', async (t) => {
  const dir = await certDir(t)
  const old = await writePair(dir, 'old', ['old.test'], { notBefore: new Date(Date.now() - 400 * 86400_000), notAfter: new Date(Date.now() - 35 * 86400_000) })
  const a = await writePair(dir, 'a', ['a.test', 'www.a.test'])
  const { store, registry, lines } = await createStore(t, tlsConfig({ certificates: [{ cert: old.cert, key: old.key }, { cert: a.cert, key: a.key }] }), { listener: 'web' })
  const fp = fingerprintAt(t, await echoServer(t, store))
  t.equal(await fp('old.test'), old.fingerprint256, 'still served')
  const warned = lines.filter((l) => l.level === 40)
  t.equal(warned.length, 1, 'one warning')
  t.equal(warned[0]?.file, old.cert)
  t.match(warned[0]?.msg, /expired/)
  t.equal(await metricValue(registry, EXPIRY, { listener: 'web', certificate: old.cert, names: 'old.test' }), Math.floor(old.notAfter.getTime() / 1000))
  t.equal(await metricValue(registry, EXPIRY, { listener: 'web', certificate: a.cert, names: 'a.test,www.a.test' }), Math.floor(a.notAfter.getTime() / 1000))
  await store.close()
  t.equal(await metricValue(registry, EXPIRY, { listener: 'web', certificate: a.cert, names: 'a.test,www.a.test' }), undefined, 'close() drops the series')
})
