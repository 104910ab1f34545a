/**
 * `switchyard start` as a real process: JSON lines on a pipe, readable lines on a terminal (a
 * pseudo-terminal from util-linux `script`), the start-up lines (version, config file, every
 * listener's URL), a sidecar's JSON lines embedded as objects, and workers mode.
 */
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { alive, CLI, runCli, spawnCli } from '../fixtures/cli.js'
import { fetchText, waitFor } from '../fixtures/proxy.js'

const dir = mkdtempSync(join(tmpdir(), 'sy-logging-'))
const VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version
const hasScript = spawnSync('script', ['--version']).status === 0
const NO_SCRIPT = hasScript ? {} : { skip: 'util-linux script (for a pseudo-terminal) is not installed' }
const ESC = String.fromCharCode(27)
const ANSI = new RegExp(`${ESC}\\[[0-9;]*m`, 'g')
/** `[07:13:23.866] INFO: ` */
const PRETTY = /^\[\d\d:\d\d:\d\d\.\d{3}\] (TRACE|DEBUG|INFO|WARN|ERROR|FATAL): /

function file(name: string, text: string): string {
  const p = join(dir, name)
  writeFileSync(p, text)
  return p
}

/** A sidecar that writes a JSON line, a text line and a JSON line on stderr, then stays up. */
const CHILD = JSON.stringify([
  'console.log(JSON.stringify({ level: 40, msg: "from the child", n: 7 }))',
  'console.log("plain text")',
  'console.error(JSON.stringify({ level: "error", message: "on stderr", code: "E1" }))',
  'setInterval(() => {}, 1e9)'
].join(';'))

const SIDECAR = `sidecars:
  - { name: js, command: ${JSON.stringify(process.execPath)}, args: ["-e", ${CHILD}] }
`

interface Teardown { teardown(fn: () => unknown): void }

interface Proc {
  /** stdout lines so far (on a terminal: colors and CRs removed). */
  lines: string[]
  /** Everything written, as written. */
  raw: () => string
  /** SIGTERM to the proxy, then its exit code (SIGKILL after 10 s). */
  stop: () => Promise<number | null>
}

/** Stops a process gracefully (its sidecars with it) and waits for it, killing it after a deadline. */
async function stopProcess(pid: () => number | undefined, child: ChildProcess, exited: Promise<number | null>): Promise<number | null> {
  const p = pid()
  if (p !== undefined && alive(p)) process.kill(p, 'SIGTERM')
  const timer = setTimeout(() => {
    if (p !== undefined && alive(p)) process.kill(p, 'SIGKILL')
    child.kill('SIGKILL')
  }, 10000)
  const code = await exited
  clearTimeout(timer)
  return code
}

/** `switchyard start` with stdout a pipe. */
function startPiped(t: Teardown, config: string, env: NodeJS.ProcessEnv = {}): Proc {
  const proc = spawnCli(['start', '--config', config], env)
  const exited = proc.exited.then((e) => e.code)
  let stopped: Promise<number | null> | undefined
  const stop = (): Promise<number | null> => (stopped ??= stopProcess(() => proc.child.pid, proc.child, exited))
  t.teardown(stop)
  return { lines: proc.lines, raw: () => proc.lines.join('\n'), stop }
}

let ptys = 0
/** `switchyard start` on a pseudo-terminal: `script` runs it; the shell execs node, so $$ is the proxy's pid. */
function startOnTerminal(t: Teardown, config: string, env: NodeJS.ProcessEnv = {}): Proc {
  const pidFile = join(dir, `pty-${++ptys}.pid`)
  const q = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`
  const cmd = `echo $$ > ${q(pidFile)}; exec ${[process.execPath, CLI, 'start', '--config', config].map(q).join(' ')}`
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
  delete childEnv.NO_COLOR
  const child = spawn('script', ['-qfc', cmd, '/dev/null'], { env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] })
  let raw = ''
  let buf = ''
  const lines: string[] = []
  child.stdout?.on('data', (d: Buffer) => {
    raw += d.toString()
    buf += d.toString()
    const parts = buf.split('\n')
    buf = parts.pop() ?? ''
    lines.push(...parts.map((l) => l.replace(ANSI, '').replace(/\r$/, '')))
  })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  const pid = (): number | undefined => {
    const text = existsSync(pidFile) ? readFileSync(pidFile, 'utf8').trim() : ''
    return text === '' ? undefined : Number(text)
  }
  let stopped: Promise<number | null> | undefined
  const stop = (): Promise<number | null> => (stopped ??= stopProcess(pid, child, exited))
  t.teardown(stop)
  return { lines, raw: () => raw, stop }
}

type Rec = Record<string, unknown> & { msg?: string; level: number }

t.test('stdout a pipe: JSON lines; the start-up lines; a sidecar\'s JSON lines as objects', async (t) => {
  const config = file('pipe.yaml', `
workers: 1
listen:
  - { host: 127.0.0.1, port: 0 }
  - { name: h2c, host: 127.0.0.1, port: 0, h2c: true }
  - { name: tls, host: 127.0.0.1, port: 0, tls: { self_signed: true } }
admin: { host: 127.0.0.1, port: 0 }
pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: [{ name: r, pool: p }]
${SIDECAR}`)
  const proc = startPiped(t, config)
  await waitFor(() => proc.lines.some((l) => l.includes('admin listening on')) && proc.lines.some((l) => l.includes('on stderr')), 15000, 'the start-up lines and the sidecar\'s lines')
  const recs = proc.lines.filter((l) => l !== '').map((l) => JSON.parse(l) as Rec)
  t.ok(recs.length > 0, 'every line is JSON')

  const starting = recs.find((r) => r.msg?.includes('starting') === true)
  t.match(starting, { version: VERSION, config, workers: 1, log_format: 'json', msg: `switchyard ${VERSION} starting with ${config}` })
  t.equal(recs.indexOf(starting as Rec), 0, 'the version and the config file come first')

  const listening = recs.filter((r) => r.msg?.startsWith('listening on ') === true)
  t.equal(listening.length, 3, 'one line per proxy listener')
  t.match(listening[0], { url: /^http:\/\/127\.0\.0\.1:\d+$/, protocols: ['http/1.1'] })
  t.match(listening[1], { listener: 'h2c', url: /^http:\/\/127\.0\.0\.1:\d+$/, protocols: ['http/1.1', 'h2c'], msg: /\(http\/1\.1, h2c\)$/ })
  t.match(listening[2], { listener: 'tls', url: /^https:\/\/127\.0\.0\.1:\d+$/, protocols: ['h2', 'http/1.1'] })
  const admin = recs.find((r) => r.msg?.startsWith('admin listening on ') === true)
  t.match(admin, { listener: 'admin', url: /^http:\/\/127\.0\.0\.1:\d+$/ })
  // The URLs are the real ones: the admin answers, the proxy answers (502: its pool is a dead port).
  t.equal((await fetchText(`${String(admin?.url)}/healthz`)).status, 200)
  t.equal((await fetchText(`${String(listening[0].url)}/`)).status, 502)
  t.equal((await fetchText(`${String(listening[1].url)}/`)).status, 502)

  const side = recs.filter((r) => r.sidecar === 'js' && 'stream' in r)
  t.match(side.find((r) => r.msg === 'from the child'), { level: 40, stream: 'stdout', child: { level: 40, msg: 'from the child', n: 7 } })
  t.match(side.find((r) => r.msg === 'on stderr'), { level: 50, stream: 'stderr', child: { code: 'E1' } })
  const text = side.find((r) => r.msg === 'plain text')
  t.match(text, { level: 30, stream: 'stdout' })
  t.notOk(text !== undefined && 'child' in text, 'a text line stays text')

  t.equal(await proc.stop(), 0)
})

t.test('on a terminal: readable lines, colored, the same start-up lines', NO_SCRIPT, async (t) => {
  const config = file('tty.yaml', `
workers: 1
listen:
  - { host: 127.0.0.1, port: 0 }
  - { name: h2c, host: 127.0.0.1, port: 0, h2c: true }
admin: { host: 127.0.0.1, port: 0 }
pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: [{ name: r, pool: p }]
${SIDECAR}`)
  const proc = startOnTerminal(t, config)
  await waitFor(() => proc.lines.some((l) => l.includes('admin listening on')) && proc.lines.some((l) => l.includes('on stderr')), 15000, 'the start-up lines and the sidecar\'s lines')
  const lines = proc.lines.filter((l) => l !== '')
  t.same(lines.filter((l) => !PRETTY.test(l)), [], 'every line is a readable one')
  t.notOk(lines.some((l) => l.startsWith('{')), 'no JSON line')
  t.ok(proc.raw().includes(`${ESC}[`), 'colors on a terminal')
  t.match(lines[0], new RegExp(`^\\S+ INFO: switchyard ${VERSION.replace(/\./g, '\\.')} starting with ${config} \\{.*"log_format":"pretty"`))
  t.match(lines.find((l) => l.includes('(http/1.1, h2c)')), /INFO: listening on http:\/\/127\.0\.0\.1:\d+ \(http\/1\.1, h2c\)/)
  const admin = /admin listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(lines.join('\n'))?.[1]
  t.equal((await fetchText(`${String(admin)}/healthz`)).status, 200, 'the admin URL printed is the real one')
  t.match(lines.find((l) => l.includes('from the child')), /WARN: \[sidecar js\] from the child .*"child":\{"level":40,"msg":"from the child","n":7\}/)
  t.match(lines.find((l) => l.includes('on stderr')), /ERROR: \[sidecar js\] on stderr /)
  t.equal(await proc.stop(), 0)
})

t.test('workers: 2 on a terminal: every process readable, start-up lines once, a switchyard sidecar still JSON', NO_SCRIPT, async (t) => {
  const config = file('workers.yaml', `
workers: 2
listen:
  - { host: 127.0.0.1, port: 0 }
  - { name: h2c, host: 127.0.0.1, port: 0, h2c: true }
admin: { host: 127.0.0.1, port: 0 }
pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: [{ name: r, pool: p }]
sidecars:
  - { name: lab, command: switchyard, args: [udp-server, --host, 127.0.0.1, --port, "0"] }
`)
  const proc = startOnTerminal(t, config)
  await waitFor(() => proc.lines.some((l) => l.includes('admin listening on')) && proc.lines.some((l) => l.includes('udp server listening')), 20000, 'the start-up lines and the sidecar\'s')
  const admin = /admin listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(proc.lines.join('\n'))?.[1]
  await waitFor(async () => (await fetchText(`${String(admin)}/readyz`).catch(() => ({ status: 0 }))).status === 200, 15000, 'both workers ready')
  const url = /INFO: listening on (http:\/\/127\.0\.0\.1:\d+) \(http\/1\.1\)/.exec(proc.lines.join('\n'))?.[1]
  t.equal((await fetchText(`${String(url)}/`)).status, 502, 'the listener URL printed is the one the workers serve')
  t.equal(await proc.stop(), 0)

  const lines = proc.lines.filter((l) => l !== '')
  t.same(lines.filter((l) => !PRETTY.test(l)), [], 'the primary and the workers all write readable lines')
  const workers = new Set(lines.flatMap((l) => /\[worker (\d+)\]/.exec(l)?.[1] ?? []))
  t.equal(workers.size, 2, 'lines from both workers')
  const count = (re: RegExp): number => lines.filter((l) => re.test(l)).length
  t.equal(count(new RegExp(`INFO: switchyard ${VERSION.replace(/\./g, '\\.')} starting with `)), 1, 'the version once')
  t.equal(count(/INFO: listening on http:\/\/127\.0\.0\.1:\d+ \(http\/1\.1\) /), 1, 'the first listener once')
  t.equal(count(/INFO: listening on http:\/\/127\.0\.0\.1:\d+ \(http\/1\.1, h2c\)/), 1, 'the h2c listener once')
  t.equal(count(/INFO: admin listening on /), 1, 'the admin listener once')
  // The primary's pretty decision reaches its workers, not its sidecars: their output is a pipe to us.
  t.match(lines.find((l) => l.includes('udp server listening')), /\[sidecar lab\] udp server listening .*"child":\{.*"name":"udp-server"/)
})

t.test('logging.format: pretty through a pipe; SWITCHYARD_LOG_FORMAT wins over the file; a wrong value stops the start', async (t) => {
  const body = `
workers: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: [{ name: r, pool: p }]
`
  const pretty = file('pretty.yaml', `${body}logging: { format: pretty }\n`)
  const a = startPiped(t, pretty)
  await waitFor(() => a.lines.some((l) => l.includes('admin listening on')), 15000, 'the admin line')
  t.same(a.lines.filter((l) => l !== '' && !PRETTY.test(l)), [], 'readable lines through a pipe')
  t.notOk(a.raw().includes(`${ESC}[`), 'no colors off a terminal')
  t.equal(await a.stop(), 0)

  const b = startPiped(t, pretty, { SWITCHYARD_LOG_FORMAT: 'json' })
  await waitFor(() => b.lines.some((l) => l.includes('admin listening on')), 15000, 'the admin line')
  t.match(JSON.parse(b.lines[0]), { log_format: 'json', msg: /starting/ }, 'the environment wins')
  t.equal(await b.stop(), 0)

  const bad = await runCli(['start', '--config', pretty], { env: { SWITCHYARD_LOG_FORMAT: 'text' } })
  t.equal(bad.code, 1)
  t.match(bad.stderr, 'switchyard: SWITCHYARD_LOG_FORMAT: expected one of "auto", "json", "pretty", got "text"')
  t.equal(bad.stdout, '', 'nothing started')
})
