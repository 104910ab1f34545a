/**
 * The sidecar supervisor's restart backoff on a fake clock: real child processes that exit, but
 * the delays between restarts are read from (and fired by) the clock, never slept.
 */
import t from 'tap'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { parseConfig } from '../../src/config/load.js'
import { Supervisor, STABLE_MS, restartDelay } from '../../src/sidecars/supervisor.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import { waitFor } from '../fixtures/proxy.js'
import { alive } from '../fixtures/cli.js'

const node = JSON.stringify(process.execPath)

function supervise(t: { teardown(fn: () => unknown): void }, script: string, restart = '{ initial_delay_ms: 100, max_delay_ms: 700 }') {
  const config = parseConfig(`
pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: []
sidecars:
  - { name: s, command: ${node}, args: ["-e", ${JSON.stringify(script)}], restart: ${restart}, stop_timeout_ms: 2000 }
`, 'sc.yaml', {})
  const clock = new FakeClock()
  const sup = new Supervisor(config.sidecars, pino({ level: 'silent' }), new Registry(), { clock })
  t.teardown(() => sup.stop())
  const state = () => sup.list()[0] as { state: string; pid: number | null; restarts: number }
  return { sup, clock, state }
}

t.test('restartDelay doubles from the base and is capped', async (t) => {
  t.same([1, 2, 3, 4, 5, 6].map((n) => restartDelay(n, 250, 3000)), [250, 500, 1000, 2000, 3000, 3000])
})

t.test('a sidecar that keeps failing is restarted after 100, 200, 400, 700, 700 ms', async (t) => {
  const { sup, clock, state } = supervise(t, 'process.exit(3)')
  sup.start()
  await sup.spawned()
  const delays: number[] = []
  for (let i = 0; i < 5; i++) {
    await waitFor(() => state().state === 'backoff', 5000, `exit ${i + 1}`)
    t.equal(clock.pending().length, 1, 'one restart timer')
    delays.push(await clock.fireNext())
  }
  t.same(delays, [100, 200, 400, 700, 700])
  t.equal(state().restarts, 5)
})

t.test('a stable run resets the backoff', async (t) => {
  // Runs until killed; each restart is a new process.
  const { sup, clock, state } = supervise(t, 'setInterval(() => {}, 1e9)')
  sup.start()
  await sup.spawned()
  const killAndReadDelay = async (runMs: number): Promise<number> => {
    await waitFor(() => state().state === 'running', 5000, 'the sidecar to run')
    await clock.advance(runMs)
    const pid = state().pid as number
    process.kill(pid, 'SIGKILL')
    await waitFor(() => state().state === 'backoff', 5000, 'the exit to be seen')
    t.notOk(alive(pid))
    return clock.fireNext()
  }
  t.equal(await killAndReadDelay(10), 100, 'first quick failure: the base delay')
  t.equal(await killAndReadDelay(10), 200, 'second quick failure in a row: doubled')
  t.equal(await killAndReadDelay(10), 400, 'third: doubled again')
  t.equal(await killAndReadDelay(STABLE_MS), 100, `after a run of ${STABLE_MS} ms: back to the base`)
  t.equal(await killAndReadDelay(10), 200, 'and doubling from there')
})

t.test('spawned() rejects when a sidecar cannot be spawned at all', async (t) => {
  const config = parseConfig(`
pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: []
sidecars: [{ name: ghost, command: /nonexistent/switchyard-test-binary }]
`, 'sc.yaml', {})
  const sup = new Supervisor(config.sidecars, pino({ level: 'silent' }), new Registry(), { clock: new FakeClock() })
  t.teardown(() => sup.stop())
  sup.start()
  await t.rejects(sup.spawned(), /sidecar ghost: spawn failed: .*ENOENT/)
  t.notOk(sup.allSpawned())
})
