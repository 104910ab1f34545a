import { Counter, Gauge, type Registry } from 'prom-client'

/** Why a TLS handshake failed, as counted in switchyard_tls_handshake_failures_total{reason}. */
export const HANDSHAKE_FAILURE_REASONS = [
  'http_request', 'wrong_version', 'protocol_version', 'no_shared_cipher', 'no_application_protocol',
  'unknown_ca', 'bad_certificate', 'timeout', 'closed', 'reset', 'other'
] as const
export type HandshakeFailureReason = (typeof HANDSHAKE_FAILURE_REASONS)[number]

/** TLS metrics on the app's registry; every listener's CertificateStore shares them. */
export function createTlsMetrics(registry: Registry) {
  return {
    handshakes: new Counter({
      name: 'switchyard_tls_handshakes_total',
      help: 'Completed TLS handshakes by listener, protocol version (TLSv1.2, TLSv1.3) and ALPN protocol (h2, http/1.1, none).',
      labelNames: ['listener', 'version', 'alpn'] as const,
      registers: [registry]
    }),
    handshakeFailures: new Counter({
      name: 'switchyard_tls_handshake_failures_total',
      help: 'Failed TLS handshakes by listener and reason: http_request (plain HTTP sent to the TLS port), wrong_version (not TLS), protocol_version (below tls.min_version), no_shared_cipher, no_application_protocol (no ALPN protocol in common), unknown_ca and bad_certificate (the client rejected our certificate), timeout, closed (closed before the handshake, as TCP health checks do), reset, other.',
      labelNames: ['listener', 'reason'] as const,
      registers: [registry]
    }),
    certificateExpiry: new Gauge({
      name: 'switchyard_tls_certificate_expiry_timestamp_seconds',
      help: 'When each served certificate expires (its notAfter, Unix seconds), by listener, certificate file (or self-signed) and the names it answers.',
      labelNames: ['listener', 'certificate', 'names'] as const,
      registers: [registry],
      // Workers mode: every worker serves the same certificate; summed, the date would be N times it.
      aggregator: 'min'
    }),
    certificateReloads: new Counter({
      name: 'switchyard_tls_certificate_reloads_total',
      help: 'Certificate reloads (config reload or changed files) by listener and result (success, error); on error the previous certificates keep serving.',
      labelNames: ['listener', 'result'] as const,
      registers: [registry]
    })
  }
}

export type TlsMetrics = ReturnType<typeof createTlsMetrics>
