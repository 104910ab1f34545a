import { UPSTREAM_ERRORS, poolDetail, type ProxyError } from '../errors.js'
import type { Flow, ResponseSink, UpstreamResponse } from './attempt-loop.js'
import type { ClientWriter } from './client-writer.js'

/**
 * Relays an exchange's answer to the client as it streams: the plain (uncached) path. Backpressure
 * both ways: the member is paused while the client's socket is full and resumed on 'drain'.
 */
export class ForwardSink implements ResponseSink {
  private response: UpstreamResponse | undefined

  constructor(
    private readonly writer: ClientWriter,
    private readonly pool: string,
    private readonly onComplete?: (res: UpstreamResponse) => void,
    /** Fields added to the answer (the cache's X-Cache and Cache-Status on a request it passed on). */
    private readonly extra?: Readonly<Record<string, string>>
  ) {}

  onResponseStart(res: UpstreamResponse, flow: Flow): void {
    const w = this.writer
    w.member = res.member.name
    w.upstreamMs = res.upstreamMs
    const h = w.headersFrom(res.headers as Record<string, string | string[] | undefined>)
    if (this.extra !== undefined) Object.assign(h, this.extra)
    if (!w.head(res.status, h, res.statusMessage)) {
      // An invalid status or field from the member, or the client left: never relay it.
      flow.abort()
      if (!w.closed) w.error(UPSTREAM_ERRORS.protocol, poolDetail(this.pool, UPSTREAM_ERRORS.protocol))
      return
    }
    this.response = res
    w.onWritable(() => flow.resume())
  }

  onEarlyHints(headers: UpstreamResponse['headers']): void {
    this.writer.earlyHints(headers as Record<string, string | string[] | undefined>)
  }

  onProcessing(): void {
    this.writer.processing()
  }

  onResponseData(chunk: Buffer): boolean {
    return this.writer.write(chunk)
  }

  onResponseEnd(): void {
    this.writer.end()
    if (this.response !== undefined) this.onComplete?.(this.response)
  }

  onResponseError(error: ProxyError, started: boolean): void {
    if (started) this.writer.cut()
    else this.writer.error(error, error.status >= 500 ? poolDetail(this.pool, error) : undefined)
  }
}
