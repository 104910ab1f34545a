import type { ListenerConfig } from '../config/schema.js'

/** What the request path needs to know about the listener a request came in on. */
export interface ListenerInfo {
  /** The metrics and log label: the listener's name, else host:port. */
  readonly name: string
  readonly scheme: 'http' | 'https'
  /** The Strict-Transport-Security value every answer carries (TLS listeners with hsts). */
  readonly hsts: string | undefined
  /** Plain listeners with redirect_https: every request is answered with this redirect. */
  readonly redirect: { readonly port: number; readonly status: 301 | 302 | 307 | 308 } | undefined
}

export function listenerLabel(l: ListenerConfig): string {
  return l.name ?? `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`
}

export function listenerInfo(l: ListenerConfig): ListenerInfo {
  const h = l.tls?.hsts
  return {
    name: listenerLabel(l),
    scheme: l.tls === undefined ? 'http' : 'https',
    // RFC 6797 section 6.1; sent over secure transport only (section 7.2).
    hsts: h === undefined ? undefined : `max-age=${h.max_age_s}${h.include_subdomains ? '; includeSubDomains' : ''}${h.preload ? '; preload' : ''}`,
    redirect: l.tls === undefined ? l.redirect_https : undefined
  }
}

/**
 * The https:// URL a plain request is redirected to: the request's host (port dropped) on the
 * HTTPS port, the target unchanged. Undefined when the Host is unusable (the caller answers 400).
 */
export function httpsLocation(host: string | undefined, target: string, port: number): string | undefined {
  if (host === undefined || host === '' || /[\s/\\?#@]/.test(host)) return undefined
  const bare = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d*$/, '')
  if (bare === '' || bare === '[]') return undefined
  const path = target.startsWith('/') ? target : '/'
  return `https://${bare}${port === 443 ? '' : `:${port}`}${path}`
}
