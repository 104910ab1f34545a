import type { IncomingMessage } from 'node:http'
import { PassThrough, type Readable } from 'node:stream'
import { EDGE_ERRORS } from '../errors.js'
import { ClientBodyError } from './attempt-loop.js'

export interface BodyLimits {
  /** Bodies up to this size are read whole before the upstream sees a byte (and can be replayed). */
  readonly bufferBytes: number
  /** The route's max_body_bytes: a chunked body beyond it fails with 413. */
  readonly maxBytes: number
  /** Longest pause between two reads of the body (nginx's client_body_timeout). */
  readonly betweenReadsMs: number
  /** Longest time for the whole body, counted from `deadline` (a performance.now() instant; 0 = none). */
  readonly deadline: number
}

/**
 * Reads a request body the way nginx's request buffering does: a body that fits the buffer is
 * read whole, so a malformed or truncated chunked body is refused (400/408/413) before the
 * upstream sees a byte, and a retry can replay it. A larger body streams, prefixed by what was
 * read, still under the between-reads timeout and the size limit, so a body that trickles in
 * cannot hold a member's connection. Resolves a Buffer (whole) or a Readable (streaming);
 * rejects with a ClientBodyError carrying the answer for the client.
 */
export function readRequestBody(raw: IncomingMessage, declaredLength: number, limits: BodyLimits, counter?: { bytesIn: number }): Promise<Buffer | Readable> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let timer: NodeJS.Timeout | undefined
    let out: PassThrough | undefined
    let settled = false
    const fail = (err: ClientBodyError): void => {
      cleanup()
      if (out !== undefined) out.destroy(err)
      else if (!settled) { settled = true; reject(err) }
    }
    const arm = (): void => {
      clearTimeout(timer)
      const total = limits.deadline > 0 ? limits.deadline - performance.now() : Infinity
      const wait = Math.min(limits.betweenReadsMs > 0 ? limits.betweenReadsMs : Infinity, total)
      if (wait === Infinity) return
      timer = setTimeout(() => fail(new ClientBodyError(EDGE_ERRORS.body_timeout, 'request body too slow')), Math.max(1, wait))
    }
    const onData = (c: Buffer): void => {
      size += c.length
      // The access log's bytes_in (ClientWriter.bytesIn): what was read, also of a refused body.
      if (counter !== undefined) counter.bytesIn = size
      if (size > limits.maxBytes) {
        fail(new ClientBodyError(EDGE_ERRORS.body_too_large, `request body exceeds ${limits.maxBytes} bytes`))
        return
      }
      arm()
      if (out !== undefined) {
        if (!out.write(c)) raw.pause()
        return
      }
      chunks.push(c)
      if (size > limits.bufferBytes) startStreaming()
    }
    const onEnd = (): void => {
      cleanup()
      if (out !== undefined) { out.end(); return }
      settled = true
      if (declaredLength > 0 && size !== declaredLength) reject(new ClientBodyError(EDGE_ERRORS.body_incomplete, 'request body ended early'))
      else resolve(Buffer.concat(chunks, size))
    }
    const onClose = (): void => { if (!raw.complete) fail(new ClientBodyError(EDGE_ERRORS.body_incomplete, 'request body ended early')) }
    const onError = (): void => fail(new ClientBodyError(EDGE_ERRORS.bad_request, 'malformed request body'))
    const startStreaming = (): void => {
      out = new PassThrough()
      out.on('drain', () => raw.resume())
      for (const c of chunks) out.write(c)
      chunks.length = 0
      settled = true
      resolve(out)
    }
    const cleanup = (): void => {
      clearTimeout(timer)
      raw.off('data', onData)
      raw.off('end', onEnd)
      raw.off('close', onClose)
      raw.off('error', onError)
    }
    raw.on('data', onData)
    raw.once('end', onEnd)
    raw.once('close', onClose)
    raw.once('error', onError)
    arm()
    // A declared body larger than the buffer streams from the first byte.
    if (declaredLength > limits.bufferBytes) startStreaming()
  })
}
