/**
 * Every process the benchmark starts goes through here, so every one of them is stopped on
 * completion, on error and on SIGINT. Each child leads its own process group (detached), so a
 * stop signal reaches what it started too (nginx workers, cluster workers), and a Ctrl-C in
 * the terminal reaches only the harness, which then stops them in order.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { request } from 'node:http'
import { createServer, connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import { processTree, readStat } from './procfs.js'

/** `loadgen`: a load generator run as a child (h2load); autocannon runs in the harness itself. */
export type Role = 'upstream' | 'proxy' | 'redis' | 'nginx' | 'check' | 'loadgen'

export interface Tracked {
  name: string
  role: Role
  pid: number
  child: ChildProcess
  /** The pid and every descendant seen so far (recorded after readiness). */
  pids: number[]
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  hasExited(): boolean
  /** The last few KB of stdout and stderr, for error messages. */
  output(): string
  /** Resolves with the first stdout line matching `re`. */
  waitForLine(re: RegExp, timeoutMs: number): Promise<string>
}

export interface SpawnOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** Keep a pipe to the child's stdin open (our upstream exits when it closes). */
  stdin?: boolean
}

const TAIL = 4096

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export class Processes {
  private readonly list: Tracked[] = []

  all(): readonly Tracked[] {
    return this.list
  }

  spawn(name: string, role: Role, command: string, args: string[], opts: SpawnOptions = {}): Tracked {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: [opts.stdin === true ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true
    })
    let tail = ''
    let pending = ''
    const lines: string[] = []
    const waiters: Array<{ re: RegExp; resolve: (line: string) => void }> = []
    const keep = (d: Buffer): void => { tail = (tail + d.toString()).slice(-TAIL) }
    child.stdout?.on('data', (d: Buffer) => {
      keep(d)
      pending += d.toString()
      const parts = pending.split('\n')
      pending = parts.pop() ?? ''
      for (const line of parts) {
        lines.push(line)
        for (let i = waiters.length - 1; i >= 0; i--) {
          if (waiters[i].re.test(line)) waiters.splice(i, 1)[0].resolve(line)
        }
      }
    })
    child.stderr?.on('data', keep)
    let done = false
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.on('exit', (code, signal) => { done = true; resolve({ code, signal }) })
      child.on('error', (err) => { done = true; tail += `\n${err.message}`; resolve({ code: null, signal: null }) })
    })
    const pid = child.pid ?? -1
    const tracked: Tracked = {
      name,
      role,
      pid,
      child,
      pids: pid > 0 ? [pid] : [],
      exited,
      hasExited: () => done,
      output: () => tail.trim(),
      waitForLine(re, timeoutMs) {
        const seen = lines.find((l) => re.test(l))
        if (seen !== undefined) return Promise.resolve(seen)
        return new Promise<string>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`${name}: no line matching ${re} within ${timeoutMs} ms; output: ${tail.trim()}`)), timeoutMs)
          const w = { re, resolve: (l: string) => { clearTimeout(timer); resolve(l) } }
          waiters.push(w)
          void exited.then(() => { clearTimeout(timer); reject(new Error(`${name} exited before it was ready; output: ${tail.trim()}`)) })
        })
      }
    }
    if (pid > 0) this.list.push(tracked)
    return tracked
  }

  /** Records the process's descendants (call once it is ready and has forked its workers). */
  recordTree(t: Tracked): number[] {
    for (const pid of processTree(t.pid)) if (!t.pids.includes(pid)) t.pids.push(pid)
    return t.pids
  }

  /** Every pid recorded so far, with its owner. */
  recordedPids(): Array<{ name: string; role: Role; pid: number }> {
    return this.list.flatMap((t) => t.pids.map((pid) => ({ name: t.name, role: t.role, pid })))
  }

  /**
   * Pids still alive among those recorded. A pid counts only while it is still in its owner's
   * process group, so a number reused by an unrelated process is never reported (or signalled).
   */
  leftovers(): number[] {
    return this.list.flatMap((t) => t.pids.filter((pid) => this.owned(t, pid)))
  }

  /**
   * Stops in dependency order: a load generator still running and the proxies first (they drain
   * towards their upstreams), then Redis, then the upstreams. Each group gets SIGTERM, `graceMs` to exit, then SIGKILL. Resolves with
   * the pids that survived even SIGKILL (should be none), how long each process took to exit
   * after its SIGTERM, and which ones had to be killed.
   */
  async stopAll(graceMs = 5000): Promise<{ leftovers: number[]; stopMs: Record<string, number>; killed: string[] }> {
    const stopMs: Record<string, number> = {}
    const killed: string[] = []
    const phases: Role[][] = [['loadgen', 'proxy', 'nginx', 'check'], ['redis'], ['upstream']]
    for (const roles of phases) {
      const live = this.list.filter((t) => roles.includes(t.role) && (!t.hasExited() || t.pids.some((p) => this.owned(t, p))))
      const t0 = Date.now()
      for (const t of live) {
        void t.exited.then(() => { stopMs[t.name] = Date.now() - t0 })
        this.signal(t, 'SIGTERM')
      }
      const busy = (): Tracked[] => live.filter((t) => !t.hasExited() || t.pids.some((p) => this.owned(t, p)))
      const deadline = t0 + graceMs
      while (Date.now() < deadline && busy().length > 0) await sleep(20)
      for (const t of busy()) {
        killed.push(t.name)
        this.signal(t, 'SIGKILL')
      }
      const hard = Date.now() + 2000
      while (Date.now() < hard && busy().length > 0) await sleep(20)
    }
    return { leftovers: this.leftovers(), stopMs, killed }
  }

  /** Last resort on an unexpected exit: SIGKILL every group, synchronously. */
  killAllSync(): void {
    for (const t of this.list) this.signal(t, 'SIGKILL')
  }

  private owned(t: Tracked, pid: number): boolean {
    const st = readStat(pid)
    return st !== undefined && st.state !== 'Z' && st.state !== 'X' && st.pgid === t.pid
  }

  /** To the whole group: the child leads it (detached), its workers belong to it. */
  private signal(t: Tracked, sig: NodeJS.Signals): void {
    try { process.kill(-t.pid, sig) } catch { /* group already gone */ }
  }
}

/** A TCP port free on 127.0.0.1 right now (bound, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo
      s.close(() => resolve(port))
    })
  })
}

/** One GET without keep-alive; resolves with the status and headers (body discarded). */
export function httpGet(url: string, timeoutMs = 2000): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)))
    req.on('error', reject)
    req.end()
  })
}

/**
 * Polls `probe` until it resolves true, the process exits (fails at once, with its output) or
 * the deadline passes. A readiness wait with a deadline, never a fixed sleep.
 */
export async function waitUntil(t: Tracked, what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (t.hasExited()) throw new Error(`${t.name} exited before ${what}; output:\n${t.output()}`)
    if (await probe().catch(() => false)) return
    if (Date.now() > deadline) throw new Error(`${t.name}: timed out after ${timeoutMs} ms waiting for ${what}; output:\n${t.output()}`)
    await sleep(25)
  }
}

/** True when a Redis server answers PING on this port. */
export function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    let got = ''
    const done = (ok: boolean): void => { s.destroy(); resolve(ok) }
    s.setTimeout(1000, () => done(false))
    s.on('connect', () => s.write('PING\r\n'))
    s.on('data', (d) => { got += d.toString(); if (got.includes('\r\n')) done(got.startsWith('+PONG')) })
    s.on('error', () => done(false))
  })
}
