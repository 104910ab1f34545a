import { constants as h2constants, type Http2Stream } from 'node:http2'
import { markServerReset } from '../listeners/http2-sessions.js'
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Transform } from 'node:stream'
import { errorBody, type ProxyError } from '../errors.js'
import { PASS, VARY, addVary, applyCoding, contentLength, notModifiedForCoding, type CompressPolicy, type Verdict } from '../compression/compress-policy.js'
import { createEncoder, flushEncoder } from '../compression/encoder.js'
import type { Coding } from '../compression/negotiate.js'
import { clientResponseHeaders } from './forwarding-headers.js'
import type { Flow } from './attempt-loop.js'

export const VIA = 'switchyard'

/**
 * The one code that writes status, headers and body to the client: forwarded answers, cache
 * hits, 304s and the proxy's own error answers. It adds Via and X-Request-Id everywhere, closes
 * the connection when an answer leaves the request unread, cuts a response whose body failed
 * midway (never a clean short one), and stops a client that stops reading.
 *
 * On a route with `compress` it also compresses (compression/compress-policy.ts decides, in
 * head()): the body then goes through a zlib stream whose output goes to the client, with
 * backpressure both ways (a full compressor pauses the member; a full client socket pauses the
 * compressor, and the stall limit counts from then), flushed after each read when the length
 * is unknown (a streamed answer is never held back), destroyed with the response.
 */
export class ClientWriter {
  /** Facts for metrics and the access log: who answered, and what the cache did. */
  member: string | undefined = undefined
  cacheStatus: string | undefined = undefined
  /** Access log: who the request authenticated as (forward proxy Proxy-Authorization, route Basic or JWT subject). */
  user: string | undefined = undefined
  /** Access log: the firewall's decision, e.g. "allow", "deny:<rule>", "rate_limited:<rule>" (undefined: no rules ran). */
  firewall: string | undefined = undefined
  /** Access log: the forward proxy sent this request anonymously (no Via, X-Forwarded-For, Forwarded). */
  anonymous = false
  /** Access log: bytes of the client's request body read, and upstream time in ms (time to the member's response head). */
  bytesIn = 0
  upstreamMs: number | undefined = undefined
  /** Access log: body bytes handed to the client's connection or stream (after compression), as nginx's $body_bytes_sent. */
  bytesOut = 0
  /** Access log: the fields of the answer's head (header capture reads them; Node keeps no copy of writeHead's object). */
  responseHeaders: OutgoingHttpHeaders | undefined = undefined
  /** The exchange feeding this answer, stopped if the client goes away first. */
  flow: Flow | undefined = undefined
  private stall: NodeJS.Timeout | undefined
  private onResume: (() => void) | undefined
  /** The 'drain' listener is on the response. */
  private listening = false
  /** end() was called: the body is complete (a compressor may still be finishing it). */
  private ended = false
  /** The compressor the body goes through, when head() chose a coding. */
  private encoder: Transform | undefined
  private coding: Coding | undefined
  /** write() said wait because the compressor was full: resume the body on its 'drain'. */
  private encoderFull = false
  /** The body's length is unknown (a stream): flush the compressor after each read. */
  private flushEachRead = false
  private flushQueued = false
  private capture: Capture | undefined
  /** The fields object and status compression() was asked about, and its answer (reused by head()). */
  private planned: OutgoingHttpHeaders | undefined
  private plannedStatus = 0
  private plannedVerdict: Verdict = PASS
  private readonly onDrain = (): void => {
    clearTimeout(this.stall)
    this.stall = undefined
    if (this.encoder !== undefined) this.encoder.resume()
    else this.onResume?.()
  }

  constructor(
    readonly res: ServerResponse,
    private readonly req: IncomingMessage,
    private readonly id: string,
    private readonly split: { readonly variant: string; readonly setCookie: string | undefined } | undefined,
    private readonly stallMs: number,
    /** The route's compression (RouteRuntime.compress); undefined: never compress. */
    readonly compress: CompressPolicy | undefined = undefined
  ) {}

  /** The client is gone or the answer is complete: nothing more can be written. */
  get closed(): boolean {
    return this.gone || this.ended || this.res.writableEnded
  }

  /**
   * The client is gone. An HTTP/2 response (Node's compatibility API) has no `destroyed`: its
   * stream has, and a stream the client reset reads as finished.
   */
  private get gone(): boolean {
    return this.res.destroyed || (this.res as { stream?: { destroyed: boolean } }).stream?.destroyed === true
  }

  get headersSent(): boolean {
    return this.res.headersSent
  }

  /** The client-facing fields of an upstream (or stored) answer. */
  headersFrom(upstream: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
    return clientResponseHeaders(upstream, `1.1 ${VIA}`, this.id, this.split?.variant, this.split?.setCookie)
  }

  /**
   * What head() will do with an answer of this status and these fields: PASS (as it is), VARY
   * (as it is, with Vary: Accept-Encoding) or the coding it compresses with. head() reuses the
   * answer for the same fields object and status: the cache asks first, to send a stored
   * compressed copy.
   */
  compression(status: number, headers: OutgoingHttpHeaders): Verdict {
    const p = this.compress
    const v = p === undefined ? PASS : p.decide(status, headers, this.req.headers['accept-encoding'])
    this.planned = headers
    this.plannedStatus = status
    this.plannedVerdict = v
    return v
  }

  /**
   * Writes the status line and fields. False when the answer cannot be relayed (an invalid
   * status or field from the member: never passed on) or the client is gone.
   */
  head(status: number, headers: OutgoingHttpHeaders, statusMessage?: string): boolean {
    const res = this.res
    if (this.gone || res.headersSent) return false
    const p = this.compress
    let coding: Coding | undefined
    let size: number | undefined
    if (p !== undefined) {
      if (status === 304) {
        notModifiedForCoding(p, headers, this.req.headers['if-none-match'], this.req.headers['accept-encoding'])
      } else {
        const v = this.planned === headers && this.plannedStatus === status ? this.plannedVerdict : p.decide(status, headers, this.req.headers['accept-encoding'])
        if (v === VARY) {
          addVary(headers)
        } else if (v !== PASS) {
          size = contentLength(headers)
          applyCoding(headers, v)
          // A HEAD gets the fields a GET would get, and no body to compress.
          if (this.req.method !== 'HEAD') coding = v
        }
      }
      this.planned = undefined
    }
    // The answer came before the client finished sending: the rest of that body will not be
    // read, so this connection cannot carry another request.
    if (this.req.httpVersionMajor === 2) {
      // RFC 9113 section 8.2.2: no connection-specific fields in HTTP/2 (Node refuses to send
      // them), and no reason phrase (section 8.3.2).
      for (const name of H2_FORBIDDEN) delete headers[name]
      // Node's HTTP/2 refuses a repeated single-value field (two Content-Types from a member):
      // the first one is kept, as an HTTP/1.1 client's parser would.
      for (const name in headers) {
        const v = headers[name]
        if (Array.isArray(v) && H2_SINGLE_VALUE.has(name)) headers[name] = v[0]
      }
      statusMessage = undefined
    } else if (!this.req.complete && hasBody(this.req)) {
      headers.connection = 'close'
    }
    this.responseHeaders = headers
    try {
      if (statusMessage === undefined) res.writeHead(status, headers)
      else res.writeHead(status, statusMessage, headers)
    } catch {
      // Fields Node refused stay set on the response: clear them, so an error answer can follow.
      for (const name of res.getHeaderNames()) res.removeHeader(name)
      return false
    }
    if (coding !== undefined) this.startEncoder(p as CompressPolicy, coding, size)
    return true
  }

  /**
   * Hands the compressed body to `done` once it is complete, if this answer is compressed and
   * the compressed body is at most `limit` bytes (a cache fill keeps the copy, so the first hit
   * in this coding does not compress again). Call before head(); never called for a cut answer.
   */
  captureEncoded(limit: number, done: (coding: Coding, body: Buffer) => void): void {
    this.capture = { limit, size: 0, chunks: [], done }
  }

  /**
   * Relays a 103 Early Hints (RFC 8297). Never to an HTTP/1.0 client (RFC 9110 section 15.2), and
   * only the Link fields and other end-to-end fields.
   */
  earlyHints(headers: Record<string, string | string[] | undefined>): void {
    const res = this.res
    if (!this.interimAllowed() || headers.link === undefined) return
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

  /** A 1xx may still go out: before the head, and never to an HTTP/1.0 client (RFC 9110 section 15.2). */
  private interimAllowed(): boolean {
    return !this.res.headersSent && !this.gone && !(this.req.httpVersionMajor === 1 && this.req.httpVersionMinor === 0)
  }

  /** Relays a 102 Processing (RFC 2518 section 10.1), as a proxy forwards 1xx answers (RFC 9110 section 15.2). */
  processing(): void {
    const res = this.res as ServerResponse & { stream?: { additionalHeaders?(h: Record<string, number>): void } }
    if (!this.interimAllowed()) return
    try {
      if (typeof res.writeProcessing === 'function') res.writeProcessing()
      else res.stream?.additionalHeaders?.({ ':status': 102 })
    } catch {
      // The stream closed meanwhile: nothing to tell.
    }
  }

  /** Writes a body chunk; false means wait for `resume` (the client's socket, or the compressor, is full). */
  write(chunk: Buffer): boolean {
    if (this.gone) return true
    const enc = this.encoder
    if (enc !== undefined) {
      (this.compress as CompressPolicy).counters.bytesIn += chunk.length
      const room = enc.write(chunk)
      if (this.flushEachRead && !this.flushQueued) {
        // Once per turn of the event loop: every chunk of one read is in, the next read is not.
        this.flushQueued = true
        setImmediate(flushSoon, this)
      }
      if (room) return true
      this.encoderFull = true
      return false
    }
    this.bytesOut += chunk.length
    if (this.res.write(chunk)) return true
    this.armStall()
    return false
  }

  /** Called when a paused body may flow again. */
  onWritable(resume: () => void): void {
    this.onResume = resume
    this.listen()
  }

  end(body?: Buffer): void {
    if (this.ended) return
    this.ended = true
    const enc = this.encoder
    if (enc !== undefined && !this.gone) {
      // The response ends when the compressor has pushed out its last bytes (encoded()).
      if (body !== undefined) (this.compress as CompressPolicy).counters.bytesIn += body.length
      enc.end(body)
      return
    }
    clearTimeout(this.stall)
    this.unlisten()
    if (this.gone) return
    // Node drops a body given for a HEAD answer: none was sent.
    if (body !== undefined && this.req.method !== 'HEAD') this.bytesOut += body.length
    this.res.end(body)
  }

  /** A stored answer already in `coding` (the cache's compressed copy): sent as it is, and counted. */
  wholeEncoded(status: number, headers: OutgoingHttpHeaders, body: Buffer, coding: Coding): void {
    this.planned = undefined
    if (this.compress !== undefined && this.req.method !== 'HEAD') this.compress.counters.responses[coding]++
    this.whole(status, headers, body)
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
    if (res.headersSent || this.gone) {
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
    if (this.head(err.status, headers)) this.end(Buffer.from(body))
    else this.cut()
  }

  /** Ends the connection without a clean end of message (a body failed midway). */
  cut(): void {
    clearTimeout(this.stall)
    this.unlisten()
    this.capture = undefined
    this.encoder?.destroy()
    const stream = (this.res as { stream?: Http2Stream }).stream
    if (stream !== undefined) {
      // HTTP/2: Node's destroy() resets with NO_ERROR, which a client reads as a complete body;
      // INTERNAL_ERROR says it is cut (RFC 9113 section 8.1), as nginx does. Not the client's
      // reset: the rapid-reset guard leaves it out.
      markServerReset(stream)
      if (!stream.destroyed) stream.close(h2constants.NGHTTP2_INTERNAL_ERROR)
    }
    this.res.destroy()
  }

  /** Flushes the compressor (queued by write() for a body of unknown length). */
  flushNow(): void {
    this.flushQueued = false
    const enc = this.encoder
    if (enc !== undefined && !this.ended && !enc.destroyed) flushEncoder(enc, this.coding as Coding)
  }

  /** A client that stops reading must not hold its connection and a member's forever (stallMs is the pool's timeouts.request_ms; 0 turns the limit off). */
  private armStall(): void {
    if (this.stallMs > 0) this.stall ??= setTimeout(() => this.cut(), this.stallMs)
  }

  private listen(): void {
    if (this.listening) return
    this.listening = true
    this.res.on('drain', this.onDrain)
  }

  private unlisten(): void {
    if (!this.listening) return
    this.listening = false
    this.res.off('drain', this.onDrain)
  }

  private startEncoder(p: CompressPolicy, coding: Coding, size: number | undefined): void {
    const enc = createEncoder(coding, p, size)
    const counters = p.counters
    this.encoder = enc
    this.coding = coding
    this.flushEachRead = size === undefined
    counters.responses[coding]++
    enc.on('data', (out: Buffer) => {
      counters.bytesOut += out.length
      const c = this.capture
      if (c !== undefined) {
        c.size += out.length
        if (c.size > c.limit) this.capture = undefined
        else c.chunks.push(out)
      }
      if (this.gone) return
      this.bytesOut += out.length
      if (!this.res.write(out)) {
        enc.pause()
        this.armStall()
      }
    })
    enc.on('drain', () => {
      if (!this.encoderFull) return
      this.encoderFull = false
      this.onResume?.()
    })
    enc.once('end', () => this.encoded())
    enc.once('error', () => this.cut())
    // The client went away: the compressor's memory goes now, not at garbage collection.
    this.res.once('close', () => {
      clearTimeout(this.stall)
      enc.destroy()
    })
    this.listen()
  }

  /** The compressor pushed out its last bytes: the response ends. */
  private encoded(): void {
    clearTimeout(this.stall)
    this.unlisten()
    if (this.gone) return
    this.res.end()
    const c = this.capture
    this.capture = undefined
    if (c !== undefined) c.done(this.coding as Coding, Buffer.concat(c.chunks, c.size))
  }
}

/** What captureEncoded() collects. */
interface Capture {
  readonly limit: number
  size: number
  readonly chunks: Buffer[]
  readonly done: (coding: Coding, body: Buffer) => void
}

function flushSoon(w: ClientWriter): void {
  w.flushNow()
}

/** Fields Node's HTTP/2 sends once only (lib/internal/http2/util.js kSingleValueHeaders). */
const H2_SINGLE_VALUE = new Set([
  'access-control-allow-credentials', 'access-control-max-age', 'access-control-request-method', 'age', 'authorization',
  'content-encoding', 'content-language', 'content-length', 'content-location', 'content-md5', 'content-range', 'content-type',
  'date', 'dnt', 'etag', 'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match', 'if-range',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'range', 'referer', 'retry-after',
  'tk', 'upgrade-insecure-requests', 'user-agent', 'x-content-type-options'
])

const H2_FORBIDDEN = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'] as const

/** RFC 9112 section 6.3: a request has a body when it declares a non-zero length or a transfer coding. */
function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length']
  return (len !== undefined && len !== '0') || req.headers['transfer-encoding'] !== undefined
}
