/**
 * Runs an external load generator (wrk, h2load) under sh, which prints the tool's /proc stat
 * line after it exits (its CPU time, as `<statPrefix><stat>`), with a watchdog past the run's
 * length. Returns everything it printed on stdout.
 */
import type { Processes, SpawnOptions, Tracked } from './processes.js'

export interface LoadToolRun {
  readonly tool: string
  readonly title: string
  readonly durationS: number
  readonly statPrefix: string
  readonly env?: SpawnOptions['env']
  /** The process while it runs, then undefined (the caller's stop function signals it). */
  readonly track: (p: Tracked | undefined) => void
}

export async function runLoadTool(procs: Processes, args: string[], run: LoadToolRun): Promise<string> {
  const script = `${run.tool} "$@"; s=$?; read -r st < /proc/$$/stat; echo "${run.statPrefix}$st"; exit $s`
  const proc = procs.spawn(run.tool, 'loadgen', 'sh', ['-c', script, 'sh', ...args], run.env === undefined ? {} : { env: run.env })
  run.track(proc)
  let out = ''
  proc.child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  // Neither tool has an overall deadline of its own (a stalled stream waits): give it one.
  const watchdog = setTimeout(() => { try { process.kill(-proc.pid, 'SIGKILL') } catch { /* gone */ } }, (run.durationS + 30) * 1000)
  try {
    const { code, signal } = await proc.exited
    // stdout may still hold data after 'exit': wait for the stream's end.
    if (proc.child.stdout !== null && !proc.child.stdout.readableEnded) {
      await new Promise<void>((resolve) => { proc.child.stdout?.once('close', resolve); proc.child.stdout?.once('end', resolve) })
    }
    if (code !== 0) throw new Error(`${run.tool} ${run.title} exited with ${code ?? signal ?? 'an error'}; output: ${(out || proc.output()).trim().split('\n').slice(-6).join(' | ')}`)
  } finally {
    clearTimeout(watchdog)
    run.track(undefined)
  }
  return out
}
