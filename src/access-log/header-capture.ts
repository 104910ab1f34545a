import type { AccessLogConfig, RouteAccessLogConfig } from '../config/schema.js'

/** Header names (lower case) copied into access log lines. */
export interface HeaderCapture {
  readonly request: readonly string[]
  readonly response: readonly string[]
}

/** A route's access log, compiled once per config (RouteRuntime.accessLog). */
export interface RouteAccessLog {
  /** False: this route writes no access log lines (`routes[].access_log: false`). */
  readonly enabled: boolean
  /** The global lists plus the route's own; undefined when both are empty. */
  readonly capture: HeaderCapture | undefined
}

const lower = (names: readonly string[]): string[] => names.map((n) => n.toLowerCase())

/** The global capture lists (logging.access_log.headers); undefined when empty. */
export function globalCapture(cfg: AccessLogConfig): HeaderCapture | undefined {
  const { request, response } = cfg.headers
  if (request.length === 0 && response.length === 0) return undefined
  return { request: lower(request), response: lower(response) }
}

/**
 * A route's access log settings. Undefined (the common case: nothing to add) means "enabled,
 * with the global capture", so a route without an `access_log` block carries nothing new.
 */
export function compileRouteAccessLog(cfg: AccessLogConfig, route: RouteAccessLogConfig | undefined, shared: HeaderCapture | undefined): RouteAccessLog | undefined {
  if (route === undefined) return undefined
  const g = shared ?? { request: [], response: [] }
  const request = [...new Set([...g.request, ...lower(route.headers.request)])]
  const response = [...new Set([...g.response, ...lower(route.headers.response)])]
  const capture = request.length === 0 && response.length === 0 ? undefined : { request, response }
  return { enabled: route.enabled && cfg.enabled, capture }
}

/** The value written for a captured header: "[redacted]" for a name on the redact list, values joined with ", ". */
export function capturedValue(name: string, value: string | number | readonly string[] | undefined, redact: ReadonlySet<string>): string | undefined {
  if (value === undefined) return undefined
  if (redact.has(name)) return REDACTED
  if (typeof value === 'string') return value
  if (typeof value === 'number') return String(value)
  return value.join(', ')
}

export const REDACTED = '[redacted]'
