/**
 * Stopping `npm start` by its pid stops the proxy and every sidecar. npm 11 runs a script as
 * `sh -c '<script>'` and forwards SIGTERM/SIGINT to that shell only; dash (Debian's sh) does
 * not pass it on and dies, leaving node orphaned and running. The start script therefore
 * `exec`s node: the shell becomes the proxy, so npm's forwarded SIGTERM reaches it.
 */
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { alive } from '../fixtures/cli.js'
import { deadPort } from '../fixtures/upstream.js'
import { fetchText, waitFor } from '../fixtures/proxy.js'

/** The checkout (this file runs as dist/test/cli/npm-start.test.js). */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

async function config(): Promise<{ file: string; admin: string }> {
  const [proxyPort, adminPort, whoamiPort] = [await deadPort(), await deadPort(), await deadPort()]
  const dir = mkdtempSync(join(tmpdir(), 'sy-npm-start-'))
  const file = join(dir, 'upstreams.yaml')
  writeFileSync(file, `
workers: 1
listen: { host: 127.0.0.1, port: ${proxyPort} }
admin: { port: ${adminPort} }
pools: { web: { members: [{ url: "http://127.0.0.1:${whoamiPort}" }] } }
routes: [{ name: all, match: {}, pool: web }]
sidecars:
  - { name: who, command: switchyard, args: [whoami, --port, "${whoamiPort}"] }
  - { name: plain, command: ${JSON.stringify(process.execPath)}, args: ["-e", "setInterval(() => {}, 1e9)"] }
`)
  return { file, admin: `http://127.0.0.1:${adminPort}` }
}

/** Pids of the processes whose command line mentions `text` (Linux /proc). */
function processesMentioning(text: string): number[] {
  const pids: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(text)) pids.push(Number(name))
    } catch { /* gone meanwhile */ }
  }
  return pids
}

async function readyWithSidecars(t: { comment(msg: string): void }, admin: string): Promise<number[]> {
  await waitFor(async () => (await fetchText(`${admin}/readyz`).catch(() => ({ status: 0 }))).status === 200, 20000, 'the proxy to be ready')
  const sidecars = JSON.parse((await fetchText(`${admin}/admin/sidecars`)).body).sidecars as { name: string; pid: number }[]
  t.comment(`sidecars ${sidecars.map((s) => `${s.name}=${s.pid}`).join(' ')}`)
  return sidecars.map((s) => s.pid)
}

t.test('the start script execs node, so the shell npm signals is the proxy', async (t) => {
  const script = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start
  t.match(script, /^exec node /)
  const { file, admin } = await config()
  const sh = spawn('sh', ['-c', `${script} --config ${file}`], { cwd: ROOT, stdio: 'ignore' })
  t.teardown(() => { sh.kill('SIGKILL') })
  const exited = new Promise<number | null>((resolve) => sh.on('exit', (code) => resolve(code)))
  const sidecars = await readyWithSidecars(t, admin)
  t.equal(sidecars.length, 2)
  t.same(processesMentioning(file), [sh.pid], 'one process carries the config path: the shell became the proxy')
  sh.kill('SIGTERM')
  t.equal(await exited, 0)
  for (const pid of sidecars) t.notOk(alive(pid), `sidecar ${pid} is gone`)
})

const npm = spawnSync('npm', ['--version'], { encoding: 'utf8' })
t.test('SIGTERM to the pid of `npm start` stops the proxy and its sidecars', { skip: npm.status === 0 ? false : 'npm is not on PATH' }, async (t) => {
  t.comment(`npm ${npm.stdout.trim()}`)
  const { file, admin } = await config()
  const child = spawn('npm', ['start', '--', '--config', file], {
    cwd: ROOT,
    stdio: 'ignore',
    env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' }
  })
  t.teardown(() => { for (const pid of processesMentioning(file)) process.kill(pid, 'SIGKILL') })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  const sidecars = await readyWithSidecars(t, admin)
  const proxy = processesMentioning(file).filter((pid) => pid !== child.pid)
  t.equal(proxy.length, 1, `the proxy runs under npm (pid ${proxy.join(',')})`)
  child.kill('SIGTERM')
  t.comment(`npm exited with ${await exited}`)
  await waitFor(() => [...proxy, ...sidecars].every((pid) => !alive(pid)), 15000, 'the proxy and its sidecars to stop')
  t.same(processesMentioning(file), [], 'no process left with this config')
  for (const pid of sidecars) t.notOk(alive(pid), `sidecar ${pid} is gone`)
})
