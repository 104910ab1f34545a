import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { errorBody, type ProxyError } from '../errors.js'
import { clientResponseHeaders } from './forwarding-headers.js'
import type { Flow } from './attempt-loop.js'

export const VIA = 'switchyard'

/**
 * The one code that writes status, headers and body to the client: forwarded answers, cache
 * hits, 304s and the proxy's own error answers. It adds Via and X-Request-Id everywhere, closes
 * the connection when an answer leaves the request unread, cuts a response whose body failed
 * midway (never a clean short one), and stops a client that stops reading.
 */
export class ClientWriter {
  /** Facts for metrics and the access log: who answered, and what the cache did. */
  member: string | undefined = undefined
  cacheStatus: string | undefined = undefined
  /** The exchange feeding this answer, stopped if the client goes away first. */
  flow: Flow | undefined = undefined
  private stall: NodeJS.Timeout | undefined
  private onResume: (() => void) | undefined
  private readonly onDrain = (): void => {
    clearTimeout(this.stall)
    this.stall = undefined
    this.onResume?.()
  }

  constructor(
    readonly res: ServerResponse,
    private readonly req: IncomingMessage,
    private readonly id: string,
    private readonly split: { readonly variant: string; readonly setCookie: string | undefined } | undefined,
    private readonly stallMs: number
  ) {}

  /** The client is gone or the answer is complete: nothing more can be written. */
  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded
  }

  get headersSent(): boolean {
    return this.res.headersSent
  }

  /** The client-facing fields of an upstream (or stored) answer. */
  headersFrom(upstream: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
    return clientResponseHeaders(upstream, `1.1 ${VIA}`, this.id, this.split?.variant, this.split?.setCookie)
  }

  /**
   * Writes the status line and fields. False when the answer cannot be relayed (an invalid
   * status or field from the member: never passed on) or the client is gone.
   */
  head(status: number, headers: OutgoingHttpHeaders, statusMessage?: string): boolean {
    const res = this.res
    if (res.destroyed || res.headersSent) return false
    // The answer came before the client finished sending: the rest of that body will not be
    // read, so this connection cannot carry another request.
    if (this.req.httpVersionMajor === 2) {
      // RFC 9113 section 8.2.2: no connection-specific fields in HTTP/2 (Node refuses to send
      // them), and no reason phrase (section 8.3.2).
      for (const name of H2_FORBIDDEN) delete headers[name]
      statusMessage = undefined
    } else if (!this.req.complete && hasBody(this.req)) {
      headers.connection = 'close'
    }
    try {
      if (statusMessage === undefined) res.writeHead(status, headers)
      else res.writeHead(status, statusMessage, headers)
    } catch {
      return false
    }
    return true
  }

  /**
   * Relays a 103 Early Hints (RFC 8297). Never to an HTTP/1.0 client (RFC 9110 section 15.2), and
   * only the Link fields and other end-to-end fields.
   */
  earlyHints(headers: Record<string, string | string[] | undefined>): void {
    const res = this.res
    if (res.headersSent || res.destroyed || this.req.httpVersionMinor === 0 || headers.link === undefined) return
    const hints: Record<string, string | string[]> = {}
    for (const [k, v] of Object.entries(this.headersFrom(headers))) {
      if (v !== undefined && k !== 'via' && k !== 'x-request-id' && k !== 'content-length' && k !== 'set-cookie') hints[k] = typeof v === 'number' ? String(v) : v
    }
    try {
      res.writeEarlyHints(hints)
    } catch {
      // A Link value Node will not write: drop the hint, never the request.
    }
  }

  /** Writes a body chunk; false means wait for `resume` (the client's socket is full). */
  write(chunk: Buffer): boolean {
    if (this.res.destroyed) return true
    if (this.res.write(chunk)) return true
    // A client that stops reading must not hold its connection and a member's forever
    // (stallMs is the pool's timeouts.request_ms; 0 turns the limit off).
    if (this.stallMs > 0) this.stall ??= setTimeout(() => this.cut(), this.stallMs)
    return false
  }

  /** Called when a paused body may flow again. */
  onWritable(resume: () => void): void {
    this.onResume = resume
    this.res.on('drain', this.onDrain)
  }

  end(body?: Buffer): void {
    clearTimeout(this.stall)
    this.res.off('drain', this.onDrain)
    if (!this.res.destroyed) this.res.end(body)
  }

  /** A whole answer at once (cache hits, 304s): status, fields and body. */
  whole(status: number, headers: OutgoingHttpHeaders, body: Buffer | undefined): void {
    // RFC 9110 sections 8.6 and 6.4.1: no Content-Length and no content in a 1xx, 204 or 304.
    if (status < 200 || status === 204 || status === 304) {
      delete headers['content-length']
      body = undefined
    } else if (body !== undefined) {
      headers['content-length'] = body.length
    }
    if (this.head(status, headers)) this.end(body)
    else this.cut()
  }

  /** The proxy's own answer from the errors table; a cut connection once an answer has started. */
  error(err: ProxyError, detail?: string): void {
    const res = this.res
    if (res.headersSent || res.destroyed) {
      this.cut()
      return
    }
    const body = errorBody(err, detail)
    const headers: OutgoingHttpHeaders = {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      via: `1.1 ${VIA}`,
      'x-request-id': this.id,
      ...err.headers
    }
    if (err.close) headers.connection = 'close'
    this.head(err.status, headers)
    this.end(Buffer.from(body))
  }

  /** Ends the connection without a clean end of message (a body failed midway). */
  cut(): void {
    clearTimeout(this.stall)
    this.res.off('drain', this.onDrain)
    this.res.destroy()
  }
}

const H2_FORBIDDEN = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'] as const

/** RFC 9112 section 6.3: a request has a body when it declares a non-zero length or a transfer coding. */
function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length']
  return (len !== undefined && len !== '0') || req.headers['transfer-encoding'] !== undefined
}
