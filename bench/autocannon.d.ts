/**
 * The slice of autocannon 9's programmatic API the benchmark uses (the package ships no types
 * and @types/autocannon is not installed). Field meanings: node_modules/autocannon/README.md.
 */
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  namespace autocannon {
    interface Options {
      url: string | string[]
      connections?: number
      /** Seconds. */
      duration?: number
      /** Seconds to wait for a response before counting a timeout. */
      timeout?: number
      pipelining?: number
      /** ms between samples; the run only stops on a sample tick. */
      sampleInt?: number
      headers?: Record<string, string>
      title?: string
      /** https: URLs: passed to tls.connect (autocannon adds rejectUnauthorized: false itself). */
      tlsOptions?: import('node:tls').ConnectionOptions
      /** SNI; by default the URL's host unless it is an IP address. */
      servername?: string
    }

    /** hdr-histogram-percentiles-obj, as autocannon reports it. */
    interface Histogram {
      average: number
      mean: number
      stddev: number
      min: number
      max: number
      total: number
      p50: number
      p90: number
      p99: number
      p99_9: number
    }

    interface Result {
      title?: string
      /** Seconds, to 10 ms. */
      duration: number
      errors: number
      timeouts: number
      mismatches: number
      non2xx: number
      resets: number
      statusCodeStats: Record<string, { count: number }>
      /** Per-response latency in ms (recorded at 1 ms resolution). */
      latency: Histogram
      /** Requests per second sample; `total` is the number of completed requests. */
      requests: Histogram & { sent: number }
      throughput: Histogram
    }

    interface Instance extends EventEmitter {
      stop(): void
      on(event: 'response', listener: (client: unknown, statusCode: number, resBytes: number, responseTimeMs: number) => void): this
      on(event: 'done', listener: (result: Result) => void): this
      on(event: string, listener: (...args: unknown[]) => void): this
    }
  }

  function autocannon(opts: autocannon.Options, cb: (err: Error | null, result: autocannon.Result) => void): autocannon.Instance

  export = autocannon
}
