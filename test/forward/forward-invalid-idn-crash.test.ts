/**
 * A forward listener crashed the process on `GET http://xn--a/`. forward-target.ts
 * accepts the host (NAME allows it) and then calls new URL(`http://xn--a`), which throws
 * ERR_INVALID_URL (invalid punycode) synchronously inside the server's 'request' handler, before
 * any admission check: one unauthenticated request from anyone who can reach the listener kills
 * the process serving it (observed: the worker dies with an uncaught ERR_INVALID_URL, the client
 * gets a reset; every tunnel and request on that worker dies with it). Run through the CLI.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { CLI } from '../fixtures/cli.js'

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)) })
  })
}

function send(port: number, target: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, method: 'GET', path: target, headers: { host: 'x' }, agent: false, timeout: 5000 }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)) })
    req.on('error', () => resolve(-1))
    req.on('timeout', () => { req.destroy(); resolve(-2) })
    req.end()
  })
}

t.test('an absolute-form target with an invalid IDN label is a 400, and the proxy lives on', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-review-'))
  const [http, fwd, admin] = [await freePort(), await freePort(), await freePort()]
  const file = join(dir, 'upstreams.yaml')
  writeFileSync(file, `
listen:
  - { host: 127.0.0.1, port: ${http} }
  - { host: 127.0.0.1, port: ${fwd}, mode: forward }
admin: { host: 127.0.0.1, port: ${admin} }
pools: { web: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: [{ name: all, match: {}, pool: web }]
forward:
  clients: [127.0.0.1]
  allow: [{ host: "*.example" }]
`)
  const child = spawn(process.execPath, [CLI, 'start', '--config', file], { env: { ...process.env, DEMO_SIDECARS: 'false', LAB_SIDECARS: 'false' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let exited: number | null | undefined
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  child.on('exit', (code) => { exited = code })
  t.teardown(() => { if (exited === undefined) child.kill('SIGKILL') })
  // Ready when the forward listener answers (a target no rule allows: 403).
  const deadline = Date.now() + 15000
  let ready = 0
  while (Date.now() < deadline && exited === undefined) {
    ready = await send(fwd, 'http://a.test/')
    if (ready > 0) break
    await new Promise((r) => setTimeout(r, 100))
  }
  t.equal(ready, 403, `the forward listener is up: ${out.slice(-400)}`)
  for (const target of ['http://xn--a/', 'http://09/', 'http://256.1.1.1/', 'http://1.2.3.999999/']) {
    t.equal(await send(fwd, target), 400, `${target} answered 400`)
  }
  await new Promise((r) => setTimeout(r, 300))
  t.equal(exited, undefined, `the process is still running: ${out.slice(-600)}`)
})
