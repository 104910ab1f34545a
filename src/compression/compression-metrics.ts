import { Counter, type Registry } from 'prom-client'
import type { CompressionCounters } from './compress-policy.js'
import type { Coding } from './negotiate.js'

/** What the metrics read of a route: its name and, when it compresses, its counters and codings. */
export interface CompressingRoute {
  readonly name: string
  readonly compress: { readonly counters: CompressionCounters; readonly encodings: readonly Coding[] } | undefined
}

/**
 * The compression metrics on the app's registry. The hot path only adds to plain numbers on
 * the route's compiled policy (no label lookup per chunk); the counters are read from the
 * current routes at scrape time. A reload keeps a route's numbers (routing/runtime.ts carries
 * them over by route name).
 */
export function createCompressionMetrics(registry: Registry, routes: () => readonly CompressingRoute[]): void {
  const eachCompressing = (fn: (route: string, c: NonNullable<CompressingRoute['compress']>) => void): void => {
    for (const r of routes()) if (r.compress !== undefined) fn(r.name, r.compress)
  }
  new Counter({
    name: 'switchyard_compression_responses_total',
    help: 'Answers sent compressed, by route and content coding (streamed through a compressor, or replayed from a compressed copy in the cache).',
    labelNames: ['route', 'encoding'] as const,
    registers: [registry],
    collect() {
      this.reset()
      eachCompressing((route, c) => { for (const e of c.encodings) this.labels(route, e).inc(c.counters.responses[e]) })
    }
  })
  new Counter({
    name: 'switchyard_compression_bytes_total',
    help: 'Bytes through the compressors, by route: direction "in" the bytes compressed, "out" the compressed bytes produced (answers streamed compressed, and the compressed copies the cache makes). An answer replayed from a compressed copy compresses nothing and counts nothing here.',
    labelNames: ['route', 'direction'] as const,
    registers: [registry],
    collect() {
      this.reset()
      eachCompressing((route, c) => {
        this.labels(route, 'in').inc(c.counters.bytesIn)
        this.labels(route, 'out').inc(c.counters.bytesOut)
      })
    }
  })
}
