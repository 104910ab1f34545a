import t from 'tap'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const root = fileURLToPath(new URL('../../../', import.meta.url))

async function has(cmd: string, args: string[]): Promise<boolean> {
  try { await run(cmd, args, { cwd: root }); return true } catch { return false }
}

const compose = await has('docker-compose', ['version'])
t.test('docker-compose.yml is accepted by docker-compose config', { skip: compose ? false : 'docker-compose is not installed (apt-get install docker-compose)' }, async (t) => {
  const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', 'config', '--services'], { cwd: root })
  t.same(stdout.trim().split('\n').sort(), ['proxy', 'redis', 'whoami-1', 'whoami-2', 'whoami-3'])
})

t.test('the shipped upstreams.yaml passes switchyard check', async (t) => {
  const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))
  const { stdout } = await run(process.execPath, [cli, 'check', 'upstreams.yaml'], { cwd: root })
  t.match(stdout, /upstreams\.yaml: ok/)
  // As docker-compose.yml runs it: backends elsewhere, no demo sidecars.
  const env = { ...process.env, DEMO_SIDECARS: 'false', WHOAMI_1_URL: 'http://whoami-1:9001' }
  const r = await run(process.execPath, [cli, 'check', 'upstreams.yaml'], { cwd: root, env })
  t.match(r.stdout, /upstreams\.yaml: ok/)
})
