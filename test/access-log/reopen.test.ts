/**
 * logrotate's dance against a real `switchyard start`: the file is renamed, SIGUSR1 makes the
 * proxy open a new one by the old name; lines after the signal land in the new file, none in
 * the renamed one; SIGTERM flushes the last lines before the process exits. The shipped
 * logrotate file does the same when logrotate runs it. Workers: reopen-workers.test.ts.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { fetchOnce, waitFor } from '../fixtures/proxy.js'
import { read, reopened, startCli } from './cli-proxy.js'

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

const hasLogrotate = spawnSync('logrotate', ['--version']).status === 0
const NO_LOGROTATE = hasLogrotate ? {} : { skip: 'logrotate is not installed' }

t.test('deploy/logrotate/switchyard, run by logrotate itself, rotates a running proxy\'s file', NO_LOGROTATE, async (t) => {
  const p = await startCli(t, 1)
  for (let i = 0; i < 2; i++) t.equal((await fetchOnce(`${p.proxy}/before/${i}`)).status, 200)
  await waitFor(() => read(p.log).length === 2, 5000, 'two lines in the file')
  // The shipped file with this test's path, and the pid from here instead of from systemd.
  const shipped = readFileSync(fileURLToPath(new URL('../../../deploy/logrotate/switchyard', import.meta.url)), 'utf8')
  const conf = shipped
    .replace(/^\/var\/log\/switchyard\/access\.log \{$/m, `${p.log} {`)
    .replace(/\$\(systemctl show [^)]*\)/, String(p.pid))
  t.not(conf, shipped)
  const confFile = join(p.dir, 'logrotate.conf')
  writeFileSync(confFile, conf)
  const r = spawnSync('logrotate', ['--force', '--state', join(p.dir, 'logrotate.state'), confFile], { encoding: 'utf8' })
  t.equal(r.status, 0, `logrotate ran: ${r.stderr}`)
  const rotated = readdirSync(join(p.dir, 'logs')).filter((f) => f.startsWith('access.log-'))
  t.equal(rotated.length, 1, `one rotated file (dateext): ${rotated.join(', ')}`)
  t.equal(read(join(p.dir, 'logs', rotated[0])).length, 2, 'the old lines went with it, uncompressed (delaycompress)')
  await waitFor(() => reopened(p.lines) === 1, 5000, 'the postrotate signal to reach the proxy')
  t.equal((await fetchOnce(`${p.proxy}/after`)).status, 200)
  await waitFor(() => read(p.log).length === 1, 5000, 'one line in the new file')
  t.match(read(p.log)[0], /"GET \/after HTTP\/1\.1" 200/)
})
