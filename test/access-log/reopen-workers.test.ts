/** SIGUSR1 to a cluster's primary: every worker reopens the access log file (see reopen.test.ts). */
import t from 'tap'
import { renameSync } from 'node:fs'
import { fetchOnce, waitFor } from '../fixtures/proxy.js'
import { read, reopened, startCli } from './cli-proxy.js'

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

