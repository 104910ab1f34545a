/**
 * deploy/systemd/switchyard.service: the unit is parsed and checked (and verified by
 * systemd-analyze when it is installed), then its ExecStart, ExecReload and KillSignal are
 * carried out on a real proxy as systemd would: the same command lines, the same environment,
 * $MAINPID and ${VAR} expanded, the reload commands run in order and stopped at the first failure.
 */
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { deadPort, startUpstream } from '../fixtures/upstream.js'
import { fetchText, waitFor } from '../fixtures/proxy.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('../../../', import.meta.url))
const unitPath = join(root, 'deploy/systemd/switchyard.service')

/** systemd.syntax(7): [Section], Key=Value (a key may repeat), `#`/`;` comments, `\` continues a line. */
function parseUnit(text: string): Map<string, [string, string][]> {
  const sections = new Map<string, [string, string][]>()
  let current: [string, string][] | undefined
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i].trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    while (line.endsWith('\\')) line = line.slice(0, -1) + ' ' + (lines[++i] ?? '').trim()
    const section = /^\[(.+)\]$/.exec(line)
    if (section !== null) {
      current = []
      sections.set(section[1], current)
      continue
    }
    const eq = line.indexOf('=')
    if (current === undefined || eq < 1) throw new Error(`line ${i + 1}: ${line}`)
    current.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()])
  }
  return sections
}

const unit = parseUnit(readFileSync(unitPath, 'utf8'))
const service = unit.get('Service') ?? []
const values = (key: string): string[] => service.filter(([k]) => k === key).map(([, v]) => v)
const value = (key: string): string | undefined => values(key).at(-1)

/** The unit's Environment= lines (KEY=value words; no quoting is used in this file). */
const unitEnv: Record<string, string> = Object.fromEntries(values('Environment').flatMap((v) => v.split(/\s+/)).map((w) => {
  const eq = w.indexOf('=')
  return [w.slice(0, eq), w.slice(eq + 1)]
}))

t.test('the unit: sections, start, reload, stop, restart, user', async (t) => {
  t.same([...unit.keys()], ['Unit', 'Service', 'Install'])
  t.equal(unit.get('Unit')!.find(([k]) => k === 'After')?.[1], 'network-online.target')
  t.same(unit.get('Install'), [['WantedBy', 'multi-user.target']])
  t.ok(['exec', 'simple'].includes(value('Type')!), 'not notify: the process does not call sd_notify')
  const start = value('ExecStart')!.split(/\s+/)
  t.same(start, ['/usr/bin/node', '/opt/switchyard/dist/src/cli/main.js', 'start', '--config', '${SWITCHYARD_CONFIG}'])
  t.equal(value('WorkingDirectory'), '/opt/switchyard')
  t.equal(unitEnv.SWITCHYARD_CONFIG, '/etc/switchyard/upstreams.yaml')
  t.equal(unitEnv.NODE_ENV, 'production')
  const reload = values('ExecReload')
  t.same(reload.at(-1), '/bin/kill -HUP $MAINPID', 'the last reload command sends SIGHUP to the main process')
  t.same(reload.slice(0, -1).map((l) => l.split(/\s+/).slice(2)), [['check', '${SWITCHYARD_CONFIG}']], 'after checking the file')
  t.equal(value('KillSignal'), 'SIGTERM', 'SIGTERM drains')
  t.equal(value('KillMode'), 'mixed', 'to the main process only: it stops its sidecars itself')
  // The drain (limits.shutdown_timeout_ms, 10 s by default) then the sidecars (stop_timeout_ms, 5 s).
  t.ok(Number(value('TimeoutStopSec')) > 10 + 5, `TimeoutStopSec ${value('TimeoutStopSec')} leaves time to drain`)
  t.equal(value('Restart'), 'on-failure')
  t.notOk(['root', '0', undefined].includes(value('User')), 'not root')
})

t.test('the unit: hardening', async (t) => {
  for (const [k, v] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['ProtectHome', 'yes'], ['PrivateTmp', 'yes'], ['PrivateDevices', 'yes'],
    ['RestrictSUIDSGID', 'yes'], ['SystemCallArchitectures', 'native'], ['SystemCallFilter', '@system-service']]) {
    t.equal(value(k), v, `${k}=${v}`)
  }
  t.equal(value('CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE', 'one capability: ports below 1024')
  t.equal(value('AmbientCapabilities'), 'CAP_NET_BIND_SERVICE')
  t.notOk(value('MemoryDenyWriteExecute'), 'MemoryDenyWriteExecute would stop V8\'s JIT')
  t.same(value('RestrictAddressFamilies')?.split(/\s+/).sort(), ['AF_INET', 'AF_INET6', 'AF_UNIX'])
})

let analyze = false
try { await run('systemd-analyze', ['--version']); analyze = true } catch { analyze = false }
t.test('systemd-analyze verify accepts it (and does notice a typo)', { skip: analyze ? false : 'systemd-analyze is not installed' }, async (t) => {
  const r = await run('systemd-analyze', ['verify', unitPath]).then(({ stderr }) => ({ code: 0, stderr }), (e: { code: number; stderr: string }) => e)
  t.equal(r.code, 0, r.stderr)
  t.same(r.stderr.split('\n').filter((l) => l.includes('switchyard.service')), [], 'no warning about the unit')
  const dir = mkdtempSync(join(tmpdir(), 'sy-unit-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const typo = join(dir, 'switchyard.service')
  writeFileSync(typo, readFileSync(unitPath, 'utf8').replace('ProtectHome=', 'ProtectHom='))
  const bad = await run('systemd-analyze', ['verify', typo]).then(({ stderr }) => stderr, (e: { stderr: string }) => e.stderr)
  t.match(bad, /Unknown key 'ProtectHom'/)
})

/** A command line as systemd runs it here: the unit's paths mapped to this checkout, ${VAR} and $MAINPID expanded. */
function commandLine(line: string, env: Record<string, string>, mainPid?: number): string[] {
  return line.split(/\s+/).map((w) => w
    .replace(/^\/usr\/bin\/node$/, process.execPath)
    .replace(/^\/opt\/switchyard\//, root)
    .replace(/^\$MAINPID$/, String(mainPid ?? ''))
    .replace(/\$\{(\w+)\}/g, (_s, k: string) => env[k] ?? ''))
}

t.test('ExecStart, ExecReload and KillSignal on a real proxy', async (t) => {
  const a = await startUpstream('a')
  const b = await startUpstream('b')
  t.teardown(() => Promise.all([a.close(), b.close()]))
  const dir = mkdtempSync(join(tmpdir(), 'sy-systemd-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const [http, admin] = [await deadPort(), await deadPort()]
  const file = join(dir, 'upstreams.yaml')
  const yaml = (members: string[]): string => `
workers: 1
listen: { host: 127.0.0.1, port: ${http} }
admin: { port: ${admin} }
logging: { level: warn }
limits: { shutdown_timeout_ms: 3000 }
pools:
  web: { members: [${members.map((u) => `{ url: "${u}" }`).join(', ')}] }
routes: [{ name: all, match: {}, pool: web }]
`
  writeFileSync(file, yaml([a.url]))
  // As an EnvironmentFile (/etc/switchyard/switchyard.env) would set it.
  const env = { ...unitEnv, SWITCHYARD_CONFIG: file }
  const [cmd, ...args] = commandLine(value('ExecStart')!, env)
  const proc = spawn(cmd, args, { cwd: root, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })))
  t.teardown(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') })

  const adminGet = async (path: string): Promise<string> => (await fetchText(`http://127.0.0.1:${admin}${path}`)).body
  const members = async (): Promise<string[]> => (JSON.parse(await adminGet('/admin/pools')) as { pools: { web: { members: { url: string }[] } } }).pools.web.members.map((m) => m.url)
  const reloads = async (result: string): Promise<number> => Number(new RegExp(`^switchyard_config_reloads_total\\{result="${result}"\\} (\\d+)`, 'm').exec(await adminGet('/metrics'))?.[1] ?? 0)
  await waitFor(async () => { try { return (await fetchText(`http://127.0.0.1:${admin}/readyz`)).status === 200 } catch { return proc.exitCode !== null } }, 30000, 'ready')
  t.equal(proc.exitCode, null, `started ${stderr}`)
  t.same(await members(), [a.url])

  /** `systemctl reload`: each ExecReload line in order; the first that fails fails the reload. */
  const systemctlReload = async (): Promise<{ ok: boolean; stderr: string }> => {
    for (const line of values('ExecReload')) {
      const [c, ...rest] = commandLine(line, env, proc.pid)
      try {
        await run(c, rest, { cwd: root, env: { PATH: process.env.PATH, ...env } })
      } catch (err) {
        return { ok: false, stderr: (err as { stderr: string }).stderr }
      }
    }
    return { ok: true, stderr: '' }
  }

  writeFileSync(file, yaml([a.url, b.url]))
  t.same(await systemctlReload(), { ok: true, stderr: '' })
  await waitFor(async () => (await members()).length === 2, 10000, 'the reload to apply')
  t.same(await members(), [a.url, b.url], 'SIGHUP reloaded the file: a member added')
  t.equal(await reloads('success'), 1)
  const hits = a.hits + b.hits
  for (let i = 0; i < 4; i++) t.equal((await fetchText(`http://127.0.0.1:${http}/`)).status, 200)
  t.equal(a.hits + b.hits - hits, 4)
  t.ok(b.hits > 0, 'the new member serves')

  writeFileSync(file, yaml([a.url]).replace('pool: web', 'pool: nowhere'))
  const failed = await systemctlReload()
  t.equal(failed.ok, false, 'a bad file fails `systemctl reload`')
  t.match(failed.stderr, /routes\[0\]\.pool: unknown pool "nowhere"/, 'with the reason in the journal')
  t.equal(await reloads('failure'), 0, 'and no SIGHUP was sent')
  t.same(await members(), [a.url, b.url], 'the running config stays')
  t.equal(proc.exitCode, null)

  proc.kill(value('KillSignal') as NodeJS.Signals)
  t.same(await exited, { code: 0, signal: null }, 'KillSignal: drained and exited 0 (systemd: a clean stop, no restart)')
})
