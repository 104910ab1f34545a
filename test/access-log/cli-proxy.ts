/** `switchyard start` with the access log in a file, for the reopen tests (tap runs only *.test.js). */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { alive, spawnCli } from '../fixtures/cli.js'
import { fetchText, waitFor } from '../fixtures/proxy.js'
import { deadPort, startUpstream } from '../fixtures/upstream.js'

export const read = (path: string): string[] => existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((l) => l !== '') : []

export async function startCli(t: { teardown(fn: () => unknown): void }, workers: number): Promise<{ dir: string; log: string; proxy: string; pid: number; lines: string[]; stderr: () => string; stop: () => Promise<number | null> }> {
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
  await waitFor(async () => (await fetchText(`http://127.0.0.1:${adminPort}/readyz`).catch(() => ({ status: 0 }))).status === 200, 45000, 'the proxy to be ready')
  // The path is relative to the config file's folder, which the proxy created.
  return { dir, log: join(dir, 'logs', 'access.log'), proxy: `http://127.0.0.1:${proxyPort}`, pid, lines: proc.lines, stderr: proc.stderr, stop }
}

export const reopened = (lines: string[]): number => lines.filter((l) => l.includes('"access log reopened"')).length
