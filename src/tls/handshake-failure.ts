import type { HandshakeFailureReason } from './tls-metrics.js'

/**
 * OpenSSL 3 error codes as Node reports them on `tlsClientError` (ERR_SSL_ + the upper-cased
 * reason string), grouped into the few reasons an operator acts on. Alerts the client sent us
 * read ERR_SSL_TLSV1_ALERT_* / ERR_SSL_SSLV3_ALERT_* (RFC 8446 section 6.2).
 */
const BY_CODE: Readonly<Record<string, HandshakeFailureReason>> = {
  ERR_SSL_HTTP_REQUEST: 'http_request',
  ERR_SSL_HTTPS_PROXY_REQUEST: 'http_request',
  ERR_SSL_WRONG_VERSION_NUMBER: 'wrong_version',
  ERR_SSL_UNKNOWN_PROTOCOL: 'wrong_version',
  ERR_SSL_PACKET_LENGTH_TOO_LONG: 'wrong_version',
  ERR_SSL_RECORD_LENGTH_MISMATCH: 'wrong_version',
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'protocol_version',
  ERR_SSL_VERSION_TOO_LOW: 'protocol_version',
  ERR_SSL_NO_PROTOCOLS_AVAILABLE: 'protocol_version',
  ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: 'protocol_version',
  ERR_SSL_NO_SHARED_CIPHER: 'no_shared_cipher',
  ERR_SSL_NO_SHARED_SIGNATURE_ALGORITHMS: 'no_shared_cipher',
  ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM: 'no_shared_cipher',
  ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE: 'no_shared_cipher',
  ERR_SSL_TLSV1_ALERT_INSUFFICIENT_SECURITY: 'no_shared_cipher',
  ERR_SSL_NO_APPLICATION_PROTOCOL: 'no_application_protocol',
  ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL: 'no_application_protocol',
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: 'unknown_ca',
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: 'bad_certificate',
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN: 'bad_certificate',
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED: 'bad_certificate',
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED: 'bad_certificate',
  ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE: 'bad_certificate',
  ERR_SSL_TLSV1_UNRECOGNIZED_NAME: 'bad_certificate',
  ERR_TLS_HANDSHAKE_TIMEOUT: 'timeout',
  ETIMEDOUT: 'timeout',
  EPIPE: 'reset'
}

/** The reason label for an error Node gave on `tlsClientError`. */
export function handshakeFailureReason(err: unknown): HandshakeFailureReason {
  const e = err as { code?: unknown; message?: unknown } | null
  const code = typeof e?.code === 'string' ? e.code : ''
  if (code === 'ECONNRESET') {
    // Node reports a peer that closed (FIN) before any TLS record as ECONNRESET "socket hang up";
    // TCP health checks and port scanners do that all day, so keep them apart from real resets.
    return e?.message === 'socket hang up' ? 'closed' : 'reset'
  }
  return BY_CODE[code] ?? 'other'
}
