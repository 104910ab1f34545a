/**
 * The PROXY protocol header a tcp listener sends a member before the client's bytes, so the
 * member learns the client's address (HAProxy's proxy-protocol.txt, versions 1 and 2).
 */
import { isIPv4, isIPv6 } from 'node:net'

export type ProxyProtocolVersion = 'v1' | 'v2'

export interface ConnectionAddresses {
  sourceAddress: string | undefined
  sourcePort: number | undefined
  destinationAddress: string | undefined
  destinationPort: number | undefined
}

/** The v2 signature (section 2.2): \r\n\r\n\0\r\nQUIT\n. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])

/** ::ffff:192.0.2.1 (a dual-stack socket's IPv4 client) is sent as the IPv4 address it is. */
function unmap(a: string | undefined): string | undefined {
  return a !== undefined && /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(a) ? a.slice(7) : a
}

/** Both addresses of one family, or undefined (the header then says UNKNOWN / LOCAL). */
function family(c: ConnectionAddresses): { src: string; dst: string; v: 4 | 6 } | undefined {
  const src = unmap(c.sourceAddress)
  const dst = unmap(c.destinationAddress)
  if (src === undefined || dst === undefined || c.sourcePort === undefined || c.destinationPort === undefined) return undefined
  if (isIPv4(src) && isIPv4(dst)) return { src, dst, v: 4 }
  if (isIPv6(src) && isIPv6(dst)) return { src, dst, v: 6 }
  return undefined
}

/** `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n` (section 2.1). */
export function proxyHeaderV1(c: ConnectionAddresses): Buffer {
  const f = family(c)
  if (f === undefined) return Buffer.from('PROXY UNKNOWN\r\n')
  return Buffer.from(`PROXY TCP${f.v} ${f.src} ${f.dst} ${String(c.sourcePort)} ${String(c.destinationPort)}\r\n`)
}

/** The binary header (section 2.2): PROXY command, TCP over IPv4 or IPv6; LOCAL when unknown. */
export function proxyHeaderV2(c: ConnectionAddresses): Buffer {
  const f = family(c)
  if (f === undefined) return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])])
  const addrLen = f.v === 4 ? 12 : 36
  const out = Buffer.alloc(16 + addrLen)
  V2_SIGNATURE.copy(out, 0)
  out[12] = 0x21 // version 2, PROXY
  out[13] = f.v === 4 ? 0x11 : 0x21 // AF_INET or AF_INET6, STREAM
  out.writeUInt16BE(addrLen, 14)
  const ipLen = f.v === 4 ? 4 : 16
  ipBytes(f.src, f.v).copy(out, 16)
  ipBytes(f.dst, f.v).copy(out, 16 + ipLen)
  out.writeUInt16BE(c.sourcePort as number, 16 + 2 * ipLen)
  out.writeUInt16BE(c.destinationPort as number, 18 + 2 * ipLen)
  return out
}

export function proxyHeader(version: ProxyProtocolVersion, c: ConnectionAddresses): Buffer {
  return version === 'v1' ? proxyHeaderV1(c) : proxyHeaderV2(c)
}

function ipBytes(ip: string, v: 4 | 6): Buffer {
  if (v === 4) return Buffer.from(ip.split('.').map(Number))
  // Expand :: and a trailing dotted IPv4 part into eight 16-bit groups.
  let s = ip
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(s)
  if (dotted !== null) {
    const b = dotted[1].split('.').map(Number)
    s = s.slice(0, -dotted[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined]
  const h = head === '' ? [] : head.split(':')
  const t = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t]
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2))
  return out
}
