import t from 'tap'
import { SniTable } from '../../src/tls/sni-table.js'
import { handshakeFailureReason } from '../../src/tls/handshake-failure.js'

t.test('exact names first, then a wildcard of one label, else the fallback', async (t) => {
  const table = new SniTable([
    { names: ['a.test', '*.b.test'], value: 'first' },
    { names: ['x.b.test', 'A.TEST', '*.c.test'], value: 'second' }
  ], 'fallback')
  t.equal(table.lookup('a.test'), 'first')
  t.equal(table.lookup('A.Test'), 'first', 'case-insensitive')
  t.equal(table.lookup('a.test.'), 'first', 'a trailing dot names the same host')
  t.equal(table.lookup('x.b.test'), 'second', 'an exact name beats a wildcard listed earlier')
  t.equal(table.lookup('y.b.test'), 'first', 'the wildcard covers one label')
  t.equal(table.lookup('b.test'), 'fallback', 'a wildcard does not cover the bare domain')
  t.equal(table.lookup('z.y.b.test'), 'fallback', 'nor two labels')
  t.equal(table.lookup('q.c.test'), 'second')
  t.equal(table.lookup('.b.test'), 'fallback', 'an empty first label matches no wildcard')
  t.equal(table.lookup('other.test'), 'fallback')
})

t.test('handshake errors map to a small set of reasons', async (t) => {
  const reason = (code: string, message = 'x') => handshakeFailureReason(Object.assign(new Error(message), { code }))
  t.equal(reason('ERR_SSL_HTTP_REQUEST'), 'http_request')
  t.equal(reason('ERR_SSL_WRONG_VERSION_NUMBER'), 'wrong_version')
  t.equal(reason('ERR_SSL_UNSUPPORTED_PROTOCOL'), 'protocol_version')
  t.equal(reason('ERR_SSL_NO_SHARED_CIPHER'), 'no_shared_cipher')
  t.equal(reason('ERR_SSL_NO_APPLICATION_PROTOCOL'), 'no_application_protocol')
  t.equal(reason('ERR_SSL_TLSV1_ALERT_UNKNOWN_CA'), 'unknown_ca')
  t.equal(reason('ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE'), 'bad_certificate')
  t.equal(reason('ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN'), 'bad_certificate')
  t.equal(reason('ERR_TLS_HANDSHAKE_TIMEOUT'), 'timeout')
  t.equal(reason('ECONNRESET', 'socket hang up'), 'closed', 'closed before any TLS record')
  t.equal(reason('ECONNRESET', 'read ECONNRESET'), 'reset')
  t.equal(reason('ERR_SSL_SOMETHING_NEW'), 'other')
  t.equal(handshakeFailureReason(null), 'other', 'not even an error')
  t.equal(handshakeFailureReason('boom'), 'other')
})
