/**
 * logrotate's dance against a real `switchyard start`: the file is renamed, SIGUSR1 makes the
 * proxy open a new one by the old name; lines after the signal land in the new file, none in
 * the renamed one; SIGTERM flushes the last lines before the process exits. With workers, the
 * primary passes the signal on and every worker reopens.
 */
import t from 'tap'
import { existsSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { alive, spawnCli } from '../fixtures/cli.js'
import { fetchOnce, fetchText, waitFor } from '../fixtures/proxy.js'
import { deadPort, startUpstream } from '../fixtures/upstream.js'

const read = (path: string): string[] => existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((l) => l !== '') : []

async function startCli(t: { teardown(fn: () => unknown): void }, workers: number): Promise<{ dir: string; log: string; proxy: string; pid: number; lines: string[]; stderr: () => string; stop: () => Promise<number | null> }> {
  const up = await startUpstream('up')
  t.teardown(() => up.close())
  const [proxyPort, adminPort] = [await deadPort(), await deadPort()]
  const dir = mkdtempSync(join(tmpdir(), 'sy-reopen-'))
  const file = join(dir, 'upstreams.yaml')
  writeFileSync(file, `
workers: ${workers}
listen: { host: 127.0.0.1, port: ${proxyPort} }
admin: { host: 127.0.0.1, port: ${adminPort} }
logging: { access_log: { enabled: true, format: combined, path: logs/access.log } }
pools: { web: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: web }]
`)
  const proc = spawnCli(['start', '--config', file], { SWITCHYARD_LOG_FORMAT: 'json' })
  const pid = proc.child.pid as number
  let exited: number | null | undefined
  const done = proc.exited.then((e) => { exited = e.code; return e.code })
  const stop = async (): Promise<number | null> => {
    if (exited === undefined && alive(pid)) process.kill(pid, 'SIGTERM')
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), 10000)
    const code = await done
    clearTimeout(timer)
    return code
  }
  t.teardown(stop)
  await waitFor(async () => (await fetchText(`http://127.0.0.1:${adminPort}/readyz`).catch(() => ({ status: 0 }))).status === 200, 20000, 'the proxy to be ready')
  // The path is relative to the config file's folder, which the proxy created.
  return { dir, log: join(dir, 'logs', 'access.log'), proxy: `http://127.0.0.1:${proxyPort}`, pid, lines: proc.lines, stderr: proc.stderr, stop }
}

const reopened = (lines: string[]): number => lines.filter((l) => l.includes('"access log reopened"')).length

t.test('one process: rename, SIGUSR1, new lines in a new file; SIGTERM flushes the last ones', async (t) => {
  const p = await startCli(t, 1)
  for (let i = 0; i < 3; i++) t.equal((await fetchOnce(`${p.proxy}/before/${i}`)).status, 200)
  await waitFor(() => read(p.log).length === 3, 5000, 'three lines in the file')
  renameSync(p.log, `${p.log}.1`)
  process.kill(p.pid, 'SIGUSR1')
  await waitFor(() => reopened(p.lines) === 1, 5000, 'the proxy to say it reopened the access log')
  t.ok(existsSync(p.log), 'a new file by the old name')
  for (let i = 0; i < 2; i++) t.equal((await fetchOnce(`${p.proxy}/after/${i}`)).status, 200)
  await waitFor(() => read(p.log).length === 2, 5000, 'two lines in the new file')
  t.match(read(p.log), [/"GET \/after\/0 HTTP\/1\.1" 200/, /"GET \/after\/1 HTTP\/1\.1" 200/])
  t.equal(read(`${p.log}.1`).length, 3, 'the rotated file got nothing more')
  t.notMatch(p.stderr(), /Debugger listening/, 'SIGUSR1 did not open the inspector')
  // The last line is written just before the exit, with no time to spare: the shutdown flushes it.
  t.equal((await fetchOnce(`${p.proxy}/last`)).status, 200)
  t.equal(await p.stop(), 0)
  t.match(read(p.log).at(-1), /"GET \/last HTTP\/1\.1" 200/, 'the last request is in the file after SIGTERM')
})

t.test('workers: 2: SIGUSR1 to the primary reopens the file in every worker', async (t) => {
  const p = await startCli(t, 2)
  // New connections are dealt to the workers in turn (cluster's round robin): both write.
  for (let i = 0; i < 6; i++) t.equal((await fetchOnce(`${p.proxy}/before/${i}`)).status, 200)
  await waitFor(() => read(p.log).length === 6, 5000, 'six lines in the file')
  renameSync(p.log, `${p.log}.1`)
  process.kill(p.pid, 'SIGUSR1')
  await waitFor(() => reopened(p.lines) === 2, 5000, 'both workers to say they reopened')
  for (let i = 0; i < 8; i++) t.equal((await fetchOnce(`${p.proxy}/after/${i}`)).status, 200)
  await waitFor(() => read(p.log).length === 8, 5000, 'eight lines in the new file')
  t.equal(read(`${p.log}.1`).length, 6, 'no worker still writes to the rotated file')
  t.equal(await p.stop(), 0)
})
