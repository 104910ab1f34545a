/**
 * Handshake and failure counters on real servers built from serverOptions(): https (HTTP/1.1)
 * and HTTP/2 with HTTP/1.1 beside it, as the listeners make them.
 */
import t from 'tap'
import { connect as netConnect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { createServer as createHttpsServer, get as httpsGet } from 'node:https'
import { connect as h2connect, createSecureServer } from 'node:http2'
import { certDir, createStore, handshake, listen, metricValue, tlsConfig, waitFor, writePair } from './tls-fixtures.js'

const HANDSHAKES = 'switchyard_tls_handshakes_total'
const FAILURES = 'switchyard_tls_handshake_failures_total'

/** Sends raw bytes to the port and waits until the server closes the connection. */
function sendRaw(port: number, bytes: string | Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = netConnect(port, '127.0.0.1', () => socket.write(bytes))
    socket.on('error', () => {})
    socket.on('close', () => resolve())
    socket.resume()
  })
}

t.test('https: handshakes by version and ALPN; plain HTTP, an old client and garbage are counted and harmless', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const { store, registry } = await createStore(t, tlsConfig({ certificates: [{ cert: a.cert, key: a.key }], min_version: 'TLSv1.3', alpn: ['http/1.1'] }), { listener: 'edge' })
  const server = createHttpsServer(store.serverOptions(), (_req, res) => res.end('ok'))
  store.attach(server)
  const port = await listen(t, server)
  const count = async (name: string, labels: Record<string, string>): Promise<number | undefined> => metricValue(registry, name, { listener: 'edge', ...labels })

  t.equal(await count(FAILURES, { reason: 'http_request' }), 0, 'every reason starts at zero')

  await handshake(t, port, { servername: 'a.test', ALPNProtocols: ['http/1.1'] })
  await waitFor(async () => (await count(HANDSHAKES, { version: 'TLSv1.3', alpn: 'http/1.1' })) === 1, 5000, 'the http/1.1 handshake')
  await handshake(t, port, { servername: 'a.test' })
  await waitFor(async () => (await count(HANDSHAKES, { version: 'TLSv1.3', alpn: 'none' })) === 1, 5000, 'a handshake without ALPN')

  await sendRaw(port, 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')
  await waitFor(async () => (await count(FAILURES, { reason: 'http_request' })) === 1, 5000, 'plain HTTP counted as http_request')

  const old = tlsConnect({ host: '127.0.0.1', port, servername: 'a.test', maxVersion: 'TLSv1.2', rejectUnauthorized: false })
  const oldError = await new Promise<NodeJS.ErrnoException>((resolve) => old.once('error', resolve))
  t.equal(oldError.code, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'the TLSv1.2 client is refused')
  await waitFor(async () => (await count(FAILURES, { reason: 'protocol_version' })) === 1, 5000, 'the TLSv1.2 client counted as protocol_version')

  await sendRaw(port, Buffer.alloc(64, 0x16))
  await sendRaw(port, Buffer.from('\x00\x01\x02 not tls at all'))
  await waitFor(async () => (await count(FAILURES, { reason: 'wrong_version' })) === 2, 5000, 'garbage counted as wrong_version')

  const body = await new Promise<string>((resolve, reject) => {
    httpsGet({ host: '127.0.0.1', port, servername: 'a.test', path: '/', rejectUnauthorized: false, agent: false }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => resolve(text))
    }).on('error', reject)
  })
  t.equal(body, 'ok', 'the server still answers after all that')
  t.equal(await count(FAILURES, { reason: 'other' }), 0, 'nothing fell into other')
})

t.test('HTTP/2 with HTTP/1.1 beside it: ALPN h2 through an SNI-picked certificate', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const b = await writePair(dir, 'b', ['b.test'])
  const { store, registry } = await createStore(t, tlsConfig({ certificates: [{ cert: a.cert, key: a.key }, { cert: b.cert, key: b.key }] }))
  const server = createSecureServer({ ...store.serverOptions(), allowHTTP1: true }, (_req, res) => res.end('h2 ok'))
  store.attach(server)
  const port = await listen(t, server)

  const session = h2connect(`https://127.0.0.1:${port}`, { servername: 'b.test', rejectUnauthorized: false })
  t.teardown(() => session.destroy())
  const { text, fingerprint } = await new Promise<{ text: string; fingerprint: string | undefined }>((resolve, reject) => {
    const req = session.request({ ':path': '/' })
    let text = ''
    req.on('data', (d: Buffer) => { text += d.toString() })
    req.on('end', () => resolve({ text, fingerprint: (session.socket as unknown as { getPeerCertificate(): { fingerprint256?: string } }).getPeerCertificate().fingerprint256 }))
    req.on('error', reject)
    req.end()
  })
  t.equal(text, 'h2 ok')
  t.equal(fingerprint, b.fingerprint256, 'the certificate SNI picked')
  await waitFor(async () => (await metricValue(registry, HANDSHAKES, { listener: 'test', version: 'TLSv1.3', alpn: 'h2' })) === 1, 5000, 'the h2 handshake')

  const { socket } = await handshake(t, port, { servername: 'a.test', ALPNProtocols: ['http/1.1'], maxVersion: 'TLSv1.2' })
  t.equal(socket.alpnProtocol, 'http/1.1')
  await waitFor(async () => (await metricValue(registry, HANDSHAKES, { listener: 'test', version: 'TLSv1.2', alpn: 'http/1.1' })) === 1, 5000, 'the TLSv1.2 http/1.1 handshake')
})
