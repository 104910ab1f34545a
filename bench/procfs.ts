/**
 * What Linux tells us about a process, from /proc (proc(5)): CPU time, parent, state, peak RSS.
 * CPU comes from utime+stime in /proc/<pid>/stat, counted in clock ticks (`getconf CLK_TCK`).
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

export interface ProcStat {
  pid: number
  ppid: number
  /** Process group. */
  pgid: number
  /** R, S, D, Z (zombie), ... */
  state: string
  /** utime + stime of all the process's threads, in clock ticks. */
  ticks: number
  /** utime alone: time in the process's own code (JavaScript, V8, libuv), not in the kernel. */
  userTicks: number
}

let clockTicks: number | undefined

/** Clock ticks per second (usually 100). */
export function clkTck(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
    } catch {
      clockTicks = 100
    }
    if (!Number.isFinite(clockTicks) || clockTicks <= 0) clockTicks = 100
  }
  return clockTicks
}

/** /proc/<pid>/stat, or undefined once the process is gone. */
export function readStat(pid: number): ProcStat | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
  // f[0] is field 3 (state), so field n is f[n - 3]: ppid 4, pgrp 5, utime 14, stime 15.
  return { pid, state: f[0], ppid: Number(f[1]), pgid: Number(f[2]), ticks: Number(f[11]) + Number(f[12]), userTicks: Number(f[11]) }
}

/** Sum of CPU ticks over the given pids (processes that are gone count 0). */
export function ticksOf(pids: readonly number[]): number {
  let sum = 0
  for (const pid of pids) sum += readStat(pid)?.ticks ?? 0
  return sum
}

/** User-mode CPU ticks over the given pids (the rest of ticksOf is system time: syscalls, the TCP stack). */
export function userTicksOf(pids: readonly number[]): number {
  let sum = 0
  for (const pid of pids) sum += readStat(pid)?.userTicks ?? 0
  return sum
}

/** The pid and every process below it (nginx workers, cluster workers). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const st = readStat(Number(name))
    if (st === undefined) continue
    const list = children.get(st.ppid)
    if (list === undefined) children.set(st.ppid, [st.pid])
    else list.push(st.pid)
  }
  const out: number[] = []
  const todo = [root]
  while (todo.length > 0) {
    const pid = todo.pop() as number
    if (readStat(pid) === undefined) continue
    out.push(pid)
    todo.push(...(children.get(pid) ?? []))
  }
  return out
}

/** Peak resident set size (VmHWM) in bytes, or undefined once the process is gone. */
export function peakRss(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? undefined : Number(m[1]) * 1024
  } catch {
    return undefined
  }
}

/** The CPU model name and the number of logical CPUs, from /proc/cpuinfo. */
export function cpuInfo(): { model: string; cpus: number } {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8')
    const models = [...text.matchAll(/^model name\s*:\s*(.*)$/gm)].map((m) => m[1].trim())
    const cpus = (text.match(/^processor\s*:/gm) ?? []).length
    return { model: models[0] ?? 'unknown', cpus }
  } catch {
    return { model: 'unknown', cpus: 0 }
  }
}
