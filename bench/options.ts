/** Command-line flags of `npm run bench -- [flags]`. */
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import type { RunOptions } from './results.js'

/** dist/bench/options.js -> <repo>/bench/results */
const DEFAULT_OUT = fileURLToPath(new URL('../../bench/results', import.meta.url))

export const USAGE = `usage: npm run bench -- [flags]   (or: node dist/bench/run.js [flags])

  --quick             1 repetition x 1.5 s per scenario, 0.5 s warm-up (under a minute)
  --reps N            repetitions, scenarios alternate round-robin inside each (default 3)
  --duration S        seconds per measured run (default 5)
  --warmup S          seconds of warm-up per scenario before the first repetition (default 1)
  --connections N     concurrent connections (default 50)
  --h2-streams N      HTTP/2 row: streams per h2load connection; it opens connections / N
                      connections, so as many requests are in flight as elsewhere (default 10)
  --delay MS          upstream answers after MS ms (?delay=MS, a slow backend; default 0)
  --out DIR           where the JSON result goes (default bench/results)
  --compare FILE      print ratio and CPU deltas against an older result JSON
  --loadgen NAME      plain HTTP/1.1 rows: wrk (2 threads, as the reference harness
                      ../shared/bench; the default when wrk is installed) or autocannon
                      (in this process; the HTTPS row always uses autocannon)
  --soak S            no table: load the memory-cache and uncached routes alternately for
                      S seconds and print the proxy's RSS and heap every 10 s
  --only REGEX        run only scenarios whose id matches (e.g. 'small/', 'redis'); the
                      direct anchor of each size still runs
  --help
`

export class UsageError extends Error {}

function positive(name: string, raw: string | undefined, def: number, integer: boolean): number {
  if (raw === undefined) return def
  const v = Number(raw)
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) throw new UsageError(`--${name}: expected a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(raw)}`)
  return v
}

/** Parses argv (without node and script); throws UsageError. Returns undefined for --help. */
export function parseOptions(argv: string[]): RunOptions | undefined {
  let values
  try {
    values = parseArgs({
      args: argv,
      options: {
        quick: { type: 'boolean', default: false },
        reps: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        connections: { type: 'string' },
        'h2-streams': { type: 'string' },
        delay: { type: 'string' },
        out: { type: 'string' },
        compare: { type: 'string' },
        only: { type: 'string' },
        loadgen: { type: 'string' },
        soak: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false }
      },
      strict: true,
      allowPositionals: false
    }).values
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  if (values.help === true) return undefined
  const quick = values.quick === true
  if (values.only !== undefined) {
    try { new RegExp(values.only) } catch (err) { throw new UsageError(`--only: ${(err as Error).message}`) }
  }
  const delay = values.delay === undefined ? 0 : Number(values.delay)
  if (!Number.isInteger(delay) || delay < 0) throw new UsageError(`--delay: expected an integer >= 0, got ${JSON.stringify(values.delay)}`)
  const connections = positive('connections', values.connections, 50, true)
  const h2Streams = positive('h2-streams', values['h2-streams'], 10, true)
  if (h2Streams > connections) throw new UsageError(`--h2-streams: at most --connections (${connections}), got ${h2Streams}`)
  if (values.loadgen !== undefined && values.loadgen !== 'wrk' && values.loadgen !== 'autocannon') throw new UsageError(`--loadgen: wrk or autocannon, got ${JSON.stringify(values.loadgen)}`)
  return {
    quick,
    ...(values.loadgen === undefined ? {} : { loadgen: values.loadgen }),
    ...(values.soak === undefined ? {} : { soakS: positive('soak', values.soak, 300, false) }),
    reps: positive('reps', values.reps, quick ? 1 : 3, true),
    durationS: positive('duration', values.duration, quick ? 1.5 : 5, false),
    warmupS: positive('warmup', values.warmup, quick ? 0.5 : 1, false),
    connections,
    h2Streams,
    delayMs: delay,
    out: values.out ?? DEFAULT_OUT,
    ...(values.compare === undefined ? {} : { compare: values.compare }),
    ...(values.only === undefined ? {} : { only: values.only })
  }
}
