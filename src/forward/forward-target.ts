/**
 * The targets a forward proxy accepts, parsed by hand (pure): absolute-form http:// requests
 * (RFC 9112 section 3.2.2) and CONNECT's authority-form (section 3.2.3). Hosts are
 * canonicalised by the WHATWG host parser and lose a trailing dot; userinfo is refused (RFC 9110
 * section 4.2.4).
 */
import { isIP } from 'node:net'
import { normalizePath } from '../routing/normalize-path.js'

export interface ForwardTarget {
  /** Name or address, without brackets. */
  readonly host: string
  readonly port: number
  /** host[:port] as sent upstream in Host (the default port left out), IPv6 in brackets. */
  readonly authority: string
  /** scheme://authority, as a URL's origin (the key of the origin's connection pool). */
  readonly origin: string
  readonly path: string
  readonly query: string
}

const ABSOLUTE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^#]*)$/
const AUTHORITY = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::([0-9]{1,5}))?$/
const NAME = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/

/**
 * The host as the WHATWG URL parser reads it (what new URL() and so undici will connect to):
 * numeric IPv4 spellings (2130706433, 0x7f.1, 127.1, 0177.0.0.1) become dotted quads, IDNs
 * become punycode, IPv6 is compressed. undefined when the parser refuses it (xn--a, 256.1.1.1):
 * judging the raw spelling as a name would let 127.1 pass a `host: "*"` rule as a name and then
 * connect to 127.0.0.1 with no lookup to check it.
 */
function canonicalHost(host: string): string | undefined {
  try {
    return new URL(`http://${host}`).hostname
  } catch {
    return undefined
  }
}

/** host and port of an authority; undefined when it is not a usable one. */
export function parseAuthority(raw: string, defaultPort: number | undefined): { host: string; port: number } | undefined {
  const m = AUTHORITY.exec(raw)
  if (m === null) return undefined
  const canonical = canonicalHost(m[1])
  if (canonical === undefined || canonical === '') return undefined
  let host = canonical
  if (host.startsWith('[')) {
    host = host.slice(1, -1)
    if (isIP(host) !== 6) return undefined
  } else {
    if (host.endsWith('.')) host = host.slice(0, -1)
    if (isIP(host) === 0 && !NAME.test(host)) return undefined
  }
  const port = m[2] === undefined ? defaultPort : Number(m[2])
  if (port === undefined || port < 1 || port > 65535) return undefined
  return { host, port }
}

function bracketed(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host
}

/** An absolute-form http:// target, or a reason for the 400. */
export function parseAbsoluteTarget(url: string): ForwardTarget | string {
  const m = ABSOLUTE.exec(url)
  if (m === null) return 'this is a forward proxy: send absolute-form requests (GET http://host/path)'
  if (m[1].toLowerCase() !== 'http') return `${m[1].toLowerCase()}:// is not proxied as a plain request (https:// goes through CONNECT)`
  if (m[2].includes('@')) return 'user information in the target is not allowed'
  const a = parseAuthority(m[2], 80)
  if (a === undefined) return 'invalid host in the target'
  const rest = m[3] === '' ? '/' : m[3].charCodeAt(0) === 63 ? `/${m[3]}` : m[3]
  const q = rest.indexOf('?')
  const n = normalizePath(q < 0 ? rest : rest.slice(0, q))
  if (!n.ok) return n.reason
  const authority = a.port === 80 ? bracketed(a.host) : `${bracketed(a.host)}:${a.port}`
  return { host: a.host, port: a.port, authority, origin: new URL(`http://${authority}`).origin, path: n.path, query: q < 0 ? '' : rest.slice(q) }
}
