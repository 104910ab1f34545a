import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { classifyUpstreamError, upstreamErrorBody, type ClassifiedError } from '../errors.js'
import type { Exchange } from './exchange.js'

/**
 * One try of a proxied request, streamed with undici's dispatch API straight between the
 * client's response and the member's connection: no intermediate Readable, no second copy of
 * the headers. Measured on the 2-core bench machine (autocannon, 50 connections, 100-byte
 * answers, same run), a bare Fastify catch-all forwarding this way cost 32 µs of CPU per request
 * and the whole proxy 44-50 µs, where the same proxy on @fastify/reply-from's request() +
 * stream path cost 57 µs.
 *
 * Backpressure both ways: undici pauses reading the member when the client's socket is full
 * (onResponseData -> controller.pause, resumed on 'drain'), and reads the request body stream
 * only as fast as the member's socket takes it.
 */
export interface TryHooks {
  /** Failure before any response byte: retry elsewhere if allowed (true = a new try started). */
  retryAfterError(ex: Exchange, c: ClassifiedError): boolean
  /** A retryable status (headers only seen so far): true = this answer is dropped, a new try started. */
  retryAfterStatus(ex: Exchange, status: number): boolean
  /** The request body failed the route's size limit while streaming upstream. */
  bodyTooLarge(ex: Exchange, res: ServerResponse): void
}

export class ForwardHandler implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined
  private started = false
  private done = false
  private stall: NodeJS.Timeout | undefined
  private readonly onDrain = (): void => {
    clearTimeout(this.stall)
    this.stall = undefined
    this.controller?.resume()
  }

  constructor(private readonly ex: Exchange, private readonly res: ServerResponse, private readonly hooks: TryHooks) {}

  /** Stops the upstream exchange (the client went away, or the try is being replaced). */
  abort(): void {
    clearTimeout(this.stall)
    if (this.done) return
    this.done = true
    this.controller?.abort(new Error('client closed the connection'))
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.done) controller.abort(new Error('aborted before the request started'))
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (this.done || statusCode < 200) return // 1xx informational answers are not relayed
    const ex = this.ex
    if (statusCode > 599) {
      // Node would relay 600-999; RFC 9110 section 15 defines none of them.
      this.done = true
      controller.abort(new Error(`invalid status ${statusCode} from upstream`))
      ex.recordUpstreamError(INVALID)
      failTry(ex, this.res, INVALID)
      return
    }
    ex.observeUpstream()
    const failed = statusCode >= 500
    ex.outcome(failed)
    if (failed && this.hooks.retryAfterStatus(ex, statusCode)) {
      this.done = true
      controller.abort(new Error('replaced by a retry'))
      return
    }
    const res = this.res
    if (res.destroyed) {
      this.abort()
      return
    }
    const out = ex.clientHeaders(headers as Record<string, string | string[] | undefined>)
    // The member answered before the client finished sending: the rest of that body will not be
    // read, so this connection cannot carry another request.
    if (!ex.request.raw.complete) out.connection = 'close'
    ex.location = headers.location as string | undefined
    ex.contentLocation = headers['content-location'] as string | undefined
    try {
      res.writeHead(statusCode, statusMessage, out)
    } catch (err) {
      // An invalid status or header from the member: never relay it.
      this.done = true
      controller.abort(err as Error)
      failTry(ex, res, { kind: 'protocol', status: 502, reason: 'upstream sent an invalid response' })
      return
    }
    this.started = true
    res.on('drain', this.onDrain)
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.done) return
    // Plain backpressure: pause the member whenever the client's socket is full. (Pausing only
    // past 256 KiB was measured slower: 141 vs 91 us of proxy CPU per 64 KiB answer.)
    if (!this.res.write(chunk) && !controller.paused) {
      controller.pause()
      // A client that stops reading must not hold its connection and a member's forever.
      this.stall ??= setTimeout(() => {
        this.ex.request.log.info({ pool: this.ex.pool?.name }, 'client stopped reading; closing the exchange')
        this.abort()
        this.res.destroy()
      }, this.ex.pool?.requestTimeoutMs ?? 30000)
    }
  }

  onResponseEnd(): void {
    if (this.done) return
    this.done = true
    clearTimeout(this.stall)
    this.res.off('drain', this.onDrain)
    this.res.end()
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.done) return
    this.done = true
    clearTimeout(this.stall)
    const res = this.res
    res.off('drain', this.onDrain)
    const ex = this.ex
    if (this.started || res.headersSent) {
      // Mid-body failure: the client must see a cut response, never a clean short one.
      ex.recordUpstreamError(classifyUpstreamError(err))
      res.destroy(err)
      return
    }
    if ((err as { code?: string }).code === 'SY_BODY_TOO_LARGE' || (err as { cause?: { code?: string } }).cause?.code === 'SY_BODY_TOO_LARGE') {
      this.hooks.bodyTooLarge(ex, res)
      return
    }
    const c = classifyUpstreamError(err)
    if (RETRYABLE.has(c.kind)) {
      ex.outcome(true)
      if (this.hooks.retryAfterError(ex, c)) return
    }
    ex.recordUpstreamError(c)
    ex.request.log.warn({ pool: ex.pool?.name, member: ex.member?.name, kind: c.kind, err }, 'upstream request failed')
    failTry(ex, res, c)
  }
}

const INVALID: ClassifiedError = { kind: 'protocol', status: 502, reason: 'upstream sent an invalid response' }

/** Only failures before the member saw the request; never a timeout (it would multiply load). */
const RETRYABLE = new Set(['refused', 'reset', 'connect_timeout', 'dns'])

/** The short plain error answer, written on the raw response (the Fastify reply is hijacked). */
export function failTry(ex: Exchange, res: ServerResponse, c: ClassifiedError): void {
  rawPlain(res, c.status, upstreamErrorBody(ex.pool?.name ?? '', c))
}

export function rawPlain(res: ServerResponse, status: number, body: string, extra?: Record<string, string>): void {
  if (res.headersSent || res.destroyed) {
    res.destroy()
    return
  }
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...extra })
  res.end(body)
}

/** The dispatch options of one try. */
export function dispatchOptions(ex: Exchange, body: Readable | Buffer | null, timeoutMs: number): Dispatcher.DispatchOptions {
  return {
    path: ex.path + ex.query,
    method: ex.request.method as Dispatcher.HttpMethod,
    headers: ex.upstreamHeaders(),
    body,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs
  }
}
