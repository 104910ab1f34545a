/**
 * The SSRF guard at connect time: a lookup (net.connect's `lookup` option, also undici's connect
 * options) that resolves a name and refuses the connection when an address it resolved to is
 * not allowed. Checking the address actually connected to, not the name, is what defeats DNS
 * rebinding (a name that resolves to a public address when checked and to 127.0.0.1 when used).
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns'
import type { LookupFunction } from 'node:net'
import { ClientBodyError } from '../routing/attempt-loop.js'
import type { ProxyError } from '../errors.js'
import type { Denial } from './forward-policy.js'

/** A resolver with dns.lookup's shape: tests inject one that maps names to chosen addresses. */
export type Resolver = LookupFunction

export const systemResolver: Resolver = dnsLookup as unknown as Resolver

/** A refusal's answer, carrying the refusal (so whoever writes it can count it). */
export interface DenialError extends ProxyError {
  readonly denial: Denial
}

/** The 403 a refusal answers with (its detail names the rule). */
export function forbidden(d: Denial): DenialError {
  return { name: 'forward_denied', status: 403, reason: d.detail, close: false, denial: d }
}

/**
 * A connection the proxy refused by its rules. It travels through undici as the connect error;
 * as a ClientBodyError the attempt loop treats it as the client's fault (no retry, the origin
 * is not marked failed) and answers its 403.
 */
export class ForwardDenied extends ClientBodyError {
  constructor(readonly denial: Denial) {
    super(forbidden(denial), denial.detail)
  }
}

/** Finds a ForwardDenied in an error's cause chain (undici may wrap connect errors). */
export function forwardDenial(err: unknown): Denial | undefined {
  let cur: unknown = err
  for (let depth = 0; depth < 4 && cur != null && typeof cur === 'object'; depth++) {
    if (cur instanceof ForwardDenied) return cur.denial
    cur = (cur as { cause?: unknown }).cause
  }
  return undefined
}

/** Wraps `resolve` so that every address it returns for a connection passes `check` first. */
export function safeLookup(resolve: Resolver, check: (address: string) => Denial | undefined): LookupFunction {
  return (hostname: string, options: LookupOptions, callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void): void => {
    resolve(hostname, options, ((err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => {
      if (err !== null) return callback(err, address, family)
      const list: LookupAddress[] = Array.isArray(address) ? address : [{ address, family: family ?? 4 }]
      // Every address must pass: with several, the connection may use any of them (Happy Eyeballs).
      for (const a of list) {
        const d = check(a.address)
        if (d !== undefined) return callback(new ForwardDenied(d), address, family)
      }
      callback(null, address, family)
    }) as never)
  }
}
