/**
 * Certificates change while the listener serves: reload() with a new config, and files replaced
 * on disk (the watcher). New handshakes see the new certificate, open connections keep working,
 * a bad change keeps the old certificate and is reported once.
 */
import t from 'tap'
import { rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { TlsConfigError } from '../../src/tls/certificate-store.js'
import { certDir, createStore, echo, echoServer, handshake, metricValue, tlsConfig, waitFor, writePair } from './tls-fixtures.js'

const RELOADS = 'switchyard_tls_certificate_reloads_total'
const EXPIRY = 'switchyard_tls_certificate_expiry_timestamp_seconds'

t.test('reload() serves the new certificates to new connections; open ones keep working', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const a2 = await writePair(dir, 'a2', ['a.test'], { notAfter: new Date(Date.now() + 30 * 86400_000) })
  const { store, registry } = await createStore(t, tlsConfig({ certificates: [{ cert: a.cert, key: a.key }] }))
  const port = await echoServer(t, store)
  const open = await handshake(t, port, { servername: 'a.test' })
  t.equal(open.peer.fingerprint256, a.fingerprint256)

  await store.reload(tlsConfig({ certificates: [{ cert: a2.cert, key: a2.key }] }))
  t.equal((await handshake(t, port, { servername: 'a.test' })).peer.fingerprint256, a2.fingerprint256, 'SNI sees the new one')
  t.equal((await handshake(t, port)).peer.fingerprint256, a2.fingerprint256, 'so does a client without SNI (the default context)')
  t.equal(await echo(open.socket, 'still here'), 'still here', 'the connection opened before the reload still works')
  t.equal(await metricValue(registry, RELOADS, { listener: 'test', result: 'success' }), 1)
  t.equal(await metricValue(registry, EXPIRY, { listener: 'test', certificate: a.cert, names: 'a.test' }), undefined, 'the old series is gone')
  t.equal(await metricValue(registry, EXPIRY, { listener: 'test', certificate: a2.cert, names: 'a.test' }), Math.floor(a2.notAfter.getTime() / 1000))
})

t.test('a failed reload keeps the old certificates, counts an error and throws', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const b = await writePair(dir, 'b', ['b.test'])
  const { store, registry, lines } = await createStore(t, tlsConfig({ certificates: [{ cert: a.cert, key: a.key }] }))
  const port = await echoServer(t, store)
  const err = await store.reload(tlsConfig({ certificates: [{ cert: b.cert, key: a.key }] })).then(() => undefined, (e: unknown) => e)
  t.type(err, TlsConfigError)
  t.equal((err as TlsConfigError).file, a.key)
  t.equal((await handshake(t, port, { servername: 'a.test' })).peer.fingerprint256, a.fingerprint256, 'the old certificate still serves')
  t.equal(await metricValue(registry, RELOADS, { listener: 'test', result: 'error' }), 1)
  t.equal(await metricValue(registry, RELOADS, { listener: 'test', result: 'success' }), 0)
  const warned = lines.filter((l) => l.level === 40)
  t.equal(warned.length, 1)
  t.equal(warned[0]?.file, a.key, 'the warning names the file')
  t.match(warned[0]?.msg, `tls key ${a.key} does not match certificate ${b.cert}`)
})

t.test('the watcher picks up files replaced on disk while an open connection keeps working', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const staged = await certDir(t)
  const next = await writePair(staged, 'next', ['a.test'])
  const { store, registry } = await createStore(t, tlsConfig({ certificates: [{ cert: a.cert, key: a.key }], watch_interval_ms: 20 }))
  const port = await echoServer(t, store)
  const open = await handshake(t, port, { servername: 'a.test' })
  t.equal(open.peer.fingerprint256, a.fingerprint256)

  // In place and one after the other, as a copy does: the watcher may see the new certificate
  // beside the old key for a while, and must keep serving the old pair until both are there.
  await writeFile(a.cert, next.certPem)
  await writeFile(a.key, next.keyPem)
  await waitFor(async () => (await handshake(t, port, { servername: 'a.test' })).peer.fingerprint256 === next.fingerprint256, 5000, 'a new connection to see the new certificate')
  t.equal(await echo(open.socket, 'ping'), 'ping', 'the connection opened before still works')
  t.ok(((await metricValue(registry, RELOADS, { listener: 'test', result: 'success' })) ?? 0) >= 1)

  // A rename over the file (certbot, Kubernetes secrets) is a change too.
  const third = await writePair(staged, 'third', ['a.test'])
  await rename(third.key, a.key)
  await rename(third.cert, a.cert)
  await waitFor(async () => (await handshake(t, port, { servername: 'a.test' })).peer.fingerprint256 === third.fingerprint256, 5000, 'the renamed-in certificate')
})

t.test('files that change one at a time: the old pair serves, the failure is reported once', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const staged = await certDir(t)
  const next = await writePair(staged, 'next', ['a.test'])
  const { store, registry, lines } = await createStore(t, tlsConfig({ certificates: [{ cert: a.cert, key: a.key }] }))
  const port = await echoServer(t, store)
  const warnings = (): number => lines.filter((l) => l.level === 40).length
  const errors = async (): Promise<number | undefined> => metricValue(registry, RELOADS, { listener: 'test', result: 'error' })

  t.equal(await store.checkFiles(), 'unchanged')
  await writeFile(a.cert, next.certPem)
  t.equal(await store.checkFiles(), 'failed', 'the new certificate with the old key')
  t.equal(warnings(), 1)
  t.match(lines.at(-1)?.msg, `tls key ${a.key} does not match certificate ${a.cert}`)
  t.equal(await store.checkFiles(), 'failed', 'retried on the next check')
  t.equal(await store.checkFiles(), 'failed')
  t.equal(warnings(), 1, 'but logged once')
  t.equal(await errors(), 1, 'and counted once')
  t.equal((await handshake(t, port, { servername: 'a.test' })).peer.fingerprint256, a.fingerprint256, 'the old pair still serves')

  await rm(a.key)
  t.equal(await store.checkFiles(), 'failed', 'a missing key')
  t.equal(warnings(), 2, 'is another change, logged once more')
  t.match(lines.at(-1)?.msg, `tls key ${a.key}: cannot read file (ENOENT)`)

  await writeFile(a.key, next.keyPem)
  t.equal(await store.checkFiles(), 'reloaded', 'the pair matches again')
  t.equal(await store.checkFiles(), 'unchanged')
  t.equal((await handshake(t, port, { servername: 'a.test' })).peer.fingerprint256, next.fingerprint256)
  t.equal(await metricValue(registry, RELOADS, { listener: 'test', result: 'success' }), 1)
  t.equal(await errors(), 2)
})

t.test('a reload can move the files; the watcher follows the new ones', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const moved = await writePair(dir, 'moved', ['a.test'])
  const { store } = await createStore(t, tlsConfig({ certificates: [{ cert: a.cert, key: a.key }], watch_interval_ms: 20 }))
  const port = await echoServer(t, store)
  await store.reload(tlsConfig({ certificates: [{ cert: moved.cert, key: moved.key }], watch_interval_ms: 20 }))
  const fresh = await writePair(join(dir), 'fresh', ['a.test'])
  await writeFile(moved.key, fresh.keyPem)
  await writeFile(moved.cert, fresh.certPem)
  await waitFor(async () => (await handshake(t, port, { servername: 'a.test' })).peer.fingerprint256 === fresh.fingerprint256, 5000, 'the moved files to be watched')
})

t.test('a reload keeps the generated certificate, so clients that accepted it still do', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const { store } = await createStore(t, tlsConfig({ self_signed: true }))
  const port = await echoServer(t, store)
  const before = (await handshake(t, port)).peer.fingerprint256
  await store.reload(tlsConfig({ self_signed: true, certificates: [{ cert: a.cert, key: a.key }] }))
  t.equal((await handshake(t, port)).peer.fingerprint256, a.fingerprint256, 'no SNI: now the first file')
  t.equal((await handshake(t, port, { servername: 'localhost' })).peer.fingerprint256, before, 'the same self-signed certificate')
})
