/**
 * Startup is all or nothing: when the proxy port is taken, `switchyard start` prints one line
 * saying so, stops every sidecar it had started and its admin listener, and exits 1; in one
 * process and with workers alike.
 */
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { alive, spawnCli } from '../fixtures/cli.js'
import { deadPort } from '../fixtures/upstream.js'
import { fetchText } from '../fixtures/proxy.js'

async function takenPort(t: { teardown(fn: () => unknown): void }): Promise<number> {
  const blocker: Server = createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => { blocker.close() })
  return (blocker.address() as { port: number }).port
}

for (const workers of [1, 2]) {
  t.test(`workers: ${workers}: a taken proxy port stops everything started and exits 1`, async (t) => {
    const [port, adminPort, whoamiPort] = [await takenPort(t), await deadPort(), await deadPort()]
    const dir = mkdtempSync(join(tmpdir(), 'sy-startup-'))
    const pidFile = join(dir, 'plain.pid')
    const file = join(dir, 'upstreams.yaml')
    // Two sidecars: this CLI's whoami (it also watches its parent) and a plain program that
    // would live forever unless it is stopped.
    const plain = `require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 1e9)`
    writeFileSync(file, `
workers: ${workers}
listen: { host: 127.0.0.1, port: ${port} }
admin: { port: ${adminPort} }
pools: { web: { members: [{ url: "http://127.0.0.1:${whoamiPort}" }] } }
routes: [{ name: all, match: {}, pool: web }]
sidecars:
  - { name: who, command: switchyard, args: [whoami, --port, "${whoamiPort}"] }
  - { name: plain, command: ${JSON.stringify(process.execPath)}, args: ["-e", ${JSON.stringify(plain)}] }
`)
    const proc = spawnCli(['start', '--config', file])
    t.teardown(() => { proc.child.kill('SIGKILL') })
    const exit = await Promise.race([proc.exited, new Promise<{ code: number | null }>((r) => { setTimeout(() => r({ code: -1 }), 30000).unref() })])
    t.equal(exit.code, 1, 'exit code 1')
    const stderr = proc.stderr().trim().split('\n')
    t.same(stderr, [`switchyard: cannot start: proxy listener 127.0.0.1:${port}: address already in use`], 'one line on stderr, naming the listener and the address')
    // Every sidecar the process spawned (its log says which pid) is gone.
    const started = proc.lines.filter((l) => l.includes('"sidecar started"')).map((l) => JSON.parse(l) as { sidecar: string; pid: number })
    t.same(started.map((s) => s.sidecar).sort(), ['plain', 'who'], 'both sidecars had been started before the proxy port was tried')
    for (const s of started) t.notOk(alive(s.pid), `sidecar ${s.sidecar} (pid ${s.pid}) is gone`)
    await t.rejects(fetchText(`http://127.0.0.1:${adminPort}/healthz`), 'the admin listener is closed')
  })
}
