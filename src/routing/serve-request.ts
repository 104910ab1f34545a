import type { Readable } from 'node:stream'
import type { HttpCache } from '../cache/http-cache.js'
import { runExchange, type AttemptDeps, type UpstreamResponse } from './attempt-loop.js'
import type { ClientWriter } from './client-writer.js'
import { ForwardSink } from './forward-sink.js'
import type { RoutedRequest } from './request-edge.js'
import { forwardRequest } from './upstream-request.js'

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])

/**
 * A routed request's last step, for reverse routes and the forward proxy alike: the cache when
 * the route caches (it may decline: unsafe methods, Range), else the plain exchange with a member.
 */
export function serveRequest(cache: HttpCache | undefined, attempt: AttemptDeps, routed: RoutedRequest, body: Buffer | Readable | null, writer: ClientWriter, dropUnderscores: boolean): void {
  if (writer.closed) return
  const caching = routed.route.cache !== undefined && cache !== undefined
  if (caching && cache.handle(routed, writer, attempt, dropUnderscores)) return
  const onComplete = caching && !SAFE_METHODS.has(routed.method)
    // RFC 9111 section 4.4: a successful unsafe request invalidates what we cached for its URL.
    ? (r: UpstreamResponse) => { if (r.status < 400) cache.invalidate(routed, r.headers.location, r.headers['content-location']) }
    : undefined
  writer.flow = runExchange(attempt, forwardRequest(routed, body, dropUnderscores), new ForwardSink(writer, routed.pool.name, onComplete))
}
