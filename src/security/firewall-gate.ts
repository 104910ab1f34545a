/**
 * Where the proxy path meets the firewall: runs a route's checks and either lets the request go
 * on or writes the refusal through the ClientWriter (so metrics, the access log and connection
 * handling are those of every other answer). Kept apart from proxy-plugin.ts, whose hot path
 * only tests `route.firewall !== undefined`.
 */
import type { ClientWriter } from '../routing/client-writer.js'
import type { FirewallRequest } from './access-conditions.js'
import type { FirewallDecision, RouteFirewall } from './firewall.js'

/** Records the decision on the writer; writes the refusal. True when the request is admitted. */
export function applyDecision(writer: ClientWriter, d: FirewallDecision): boolean {
  writer.firewall = d.label
  if (d.user !== undefined) writer.user = d.user
  if (d.admit) return true
  writer.whole(d.status, writer.headersFrom({ 'content-type': 'text/plain; charset=utf-8', ...d.headers }), Buffer.from(d.body))
  return false
}

/** Checks `req`; calls `admit` once it passes (at once when no rule needed to wait). */
export function screen(fw: RouteFirewall, req: FirewallRequest, writer: ClientWriter, admit: () => void, fail: (err: unknown) => void): void {
  const d = fw.check(req)
  if (!(d instanceof Promise)) {
    if (applyDecision(writer, d)) admit()
    return
  }
  d.then((x) => {
    // The client may have left while a check waited.
    if (writer.closed) return
    if (applyDecision(writer, x)) admit()
  }, fail)
}
