import type { IncomingHttpHeaders } from 'node:http'
import type { RouteConfig } from '../config/schema.js'

interface Entry<R> {
  readonly prefix: string
  /** A prefix not ending in '/' matches whole segments only: /api matches /api and /api/x, not /apix. */
  readonly segmentAware: boolean
  readonly methods: ReadonlySet<string> | undefined
  readonly headers: readonly (readonly [string, string])[]
  readonly value: R
}

/**
 * The route table, compiled once from the validated config (no per-request regex or YAML).
 * Hosts are tried most specific first: exact host, then wildcards by longest suffix, then
 * routes without a host. Inside one host group the first matching route in file order wins.
 */
export class RouteTable<R> {
  private readonly exact = new Map<string, Entry<R>[]>()
  private readonly wildcards: { suffix: string; entries: Entry<R>[] }[] = []
  private readonly anyHost: Entry<R>[] = []

  constructor(routes: readonly { config: RouteConfig; value: R }[]) {
    for (const { config, value } of routes) {
      const m = config.match
      const entry: Entry<R> = {
        prefix: m.path_prefix,
        segmentAware: !m.path_prefix.endsWith('/'),
        methods: m.methods === undefined ? undefined : new Set(m.methods),
        headers: Object.entries(m.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const),
        value
      }
      const host = m.host?.toLowerCase()
      if (host === undefined) {
        this.anyHost.push(entry)
      } else if (host.startsWith('*.')) {
        const suffix = host.slice(1)
        let group = this.wildcards.find((w) => w.suffix === suffix)
        if (group === undefined) {
          group = { suffix, entries: [] }
          this.wildcards.push(group)
        }
        group.entries.push(entry)
      } else {
        const list = this.exact.get(host)
        if (list === undefined) this.exact.set(host, [entry])
        else list.push(entry)
      }
    }
    this.wildcards.sort((a, b) => b.suffix.length - a.suffix.length)
  }

  /** `host` must already be normalised (see normalizeHost). */
  match(host: string, path: string, method: string, headers: IncomingHttpHeaders): R | undefined {
    const exact = this.exact.get(host)
    if (exact !== undefined) {
      const hit = firstMatch(exact, path, method, headers)
      if (hit !== undefined) return hit
    }
    for (let i = 0; i < this.wildcards.length; i++) {
      const w = this.wildcards[i]
      // *.example.com matches a.example.com and a.b.example.com, not example.com itself.
      if (host.length > w.suffix.length && host.endsWith(w.suffix)) {
        const hit = firstMatch(w.entries, path, method, headers)
        if (hit !== undefined) return hit
      }
    }
    return firstMatch(this.anyHost, path, method, headers)
  }
}

function firstMatch<R>(entries: readonly Entry<R>[], path: string, method: string, headers: IncomingHttpHeaders): R | undefined {
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]
    if (!path.startsWith(e.prefix)) continue
    if (e.segmentAware && path.length > e.prefix.length && path.charCodeAt(e.prefix.length) !== 47) continue
    if (e.methods !== undefined && !e.methods.has(method)) continue
    let ok = true
    for (let h = 0; h < e.headers.length; h++) {
      const [name, want] = e.headers[h]
      const got = headers[name]
      if (got !== want && !(Array.isArray(got) && got.includes(want))) { ok = false; break }
    }
    if (ok) return e.value
  }
  return undefined
}

/**
 * Lower-cases a Host header value and strips the port and a trailing dot. Returns undefined
 * for a value that is not a valid host (RFC 9110 section 7.2, RFC 3986 section 3.2.2).
 */
export function normalizeHost(raw: string | undefined): string | undefined {
  return normalizeAuthority(raw)?.host
}

/**
 * A Host value split into the host we route on and the authority we send upstream and key the
 * cache on: both lower-cased without a trailing dot; the authority keeps a non-default port, so
 * an origin that reflects Host can never have its answer for one port served for another.
 */
export function normalizeAuthority(raw: string | undefined): { host: string; authority: string } | undefined {
  if (raw === undefined || raw === '') return undefined
  let host = raw
  let port = ''
  if (host.charCodeAt(0) === 91) { // [v6]:port
    const close = host.indexOf(']')
    if (close < 0) return undefined
    const rest = host.slice(close + 1)
    if (rest !== '' && !/^:[0-9]{1,5}$/.test(rest)) return undefined
    const v6 = host.slice(0, close + 1).toLowerCase()
    port = rest.slice(1)
    return { host: v6, authority: port === '' || port === '80' ? v6 : `${v6}:${port}` }
  }
  const colon = host.indexOf(':')
  if (colon >= 0) {
    port = host.slice(colon + 1)
    if (!/^[0-9]{1,5}$/.test(port)) return undefined
    host = host.slice(0, colon)
  }
  if (host.endsWith('.')) host = host.slice(0, -1)
  if (host === '' || !/^[A-Za-z0-9._~!$&'()*+,;=-]+$/.test(host)) return undefined
  host = host.toLowerCase()
  return { host, authority: port === '' || port === '80' ? host : `${host}:${port}` }
}
