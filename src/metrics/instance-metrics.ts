import { readFileSync } from 'node:fs'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { ReloadStats } from '../control/reloader.js'

/** Where reload outcomes are counted: the Reloader (single process and cluster primary alike). */
export interface ReloadStatsSource {
  readonly stats: ReloadStats
}

/**
 * The package's version, read once from package.json (two levels above dist/src/metrics/ when
 * built, one above src/metrics/ when run from source; the Docker image keeps it in /app).
 */
export function switchyardVersion(): string {
  for (const rel of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: unknown; version?: unknown }
      if (pkg.name === 'switchyard' && typeof pkg.version === 'string') return pkg.version
    } catch {
      // not there: try the next place
    }
  }
  return 'unknown'
}

/**
 * What this instance is and how its config reloads went, on the registry the admin /metrics
 * serves. Named as Prometheus names its own (prometheus_build_info,
 * prometheus_config_last_reload_successful, ...), so the usual alerts carry over.
 *
 * Each family is marked `aggregator: 'omit'`: in workers mode every worker's app builds these
 * too, but the primary's AggregatorRegistry must not sum them (N workers would report
 * build_info N and reloads they never ran); the primary registers its own, read from its own
 * Reloader, which is the one that runs reloads (src/control/cluster-control.ts).
 */
export function createInstanceMetrics(registry: Registry, reloads: ReloadStatsSource, version = switchyardVersion()): void {
  const buildInfo = new Gauge({
    name: 'switchyard_build_info',
    help: 'A metric with a constant 1 labelled by the Switchyard version and the Node.js version that runs it.',
    labelNames: ['version', 'node_version'] as const,
    registers: [registry],
    aggregator: 'omit'
  })
  buildInfo.labels(version, process.version).set(1)
  new Counter({
    name: 'switchyard_config_reloads_total',
    help: 'Config reloads by result (success: applied everywhere; failure: rejected or not applied everywhere, the running config stays).',
    labelNames: ['result'] as const,
    registers: [registry],
    aggregator: 'omit',
    collect() {
      const s = reloads.stats
      this.reset()
      this.labels('success').inc(s.successes)
      this.labels('failure').inc(s.failures)
    }
  })
  new Gauge({
    name: 'switchyard_config_last_reload_success_timestamp_seconds',
    help: 'Unix time of the last successful config load (the start, until a reload succeeds).',
    registers: [registry],
    aggregator: 'omit',
    collect() { this.set(reloads.stats.lastSuccessMs / 1000) }
  })
  new Gauge({
    name: 'switchyard_config_last_reload_successful',
    help: 'Whether the last config reload attempt succeeded (1) or not (0); 1 before any reload.',
    registers: [registry],
    aggregator: 'omit',
    collect() { this.set(reloads.stats.lastSuccessful ? 1 : 0) }
  })
}
