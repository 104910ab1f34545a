/**
 * Active health checks on a fake clock: rise/fall transitions over ticks, the timeout, the first
 * round that /readyz waits for. The probe is scripted; time moves only when the test says so.
 */
import t from 'tap'
import { parseConfig } from '../../src/config/load.js'
import { buildRuntime } from '../../src/routing/runtime.js'
import { UpstreamDispatcher } from '../../src/upstreams/dispatcher.js'
import { HealthChecker } from '../../src/upstreams/health-checker.js'
import type { HealthEvent } from '../../src/upstreams/pool.js'
import type { Member } from '../../src/upstreams/member.js'
import { FakeClock, flush } from '../fixtures/fake-clock.js'

function setup(t: { teardown(fn: () => unknown): void }, hc = '{ interval_ms: 1000, timeout_ms: 300, rise: 2, fall: 3 }') {
  const config = parseConfig(`
pools:
  web:
    members: [{ url: "http://127.0.0.1:1", name: a }, { url: "http://127.0.0.1:2", name: b }, { url: "http://127.0.0.1:3", name: c }]
    health_check: ${hc}
routes: [{ name: all, match: {}, pool: web }]
`, 'hc.yaml', {})
  const dispatcher = new UpstreamDispatcher()
  t.teardown(() => dispatcher.close())
  const pool = buildRuntime(config, dispatcher).pools.get('web')!
  const events: string[] = []
  pool.onHealthEvent = (e: HealthEvent) => { if (e.kind === 'check') events.push(`${e.member.name} ${e.up ? 'up' : 'down'}`) }
  const clock = new FakeClock()
  return { pool, events, clock, dispatcher, hc: config.pools.web.health_check! }
}

t.test('fall: 3 failed ticks take a member down; rise: 2 passes bring it back', async (t) => {
  const { pool, events, clock, dispatcher, hc } = setup(t)
  // Member a's verdicts per tick; b and c always pass.
  const script = [false, false, false, true, false, true, true]
  let tick = 0
  const probes: string[] = []
  const checker = new HealthChecker(pool, hc, dispatcher, {
    clock,
    probe: async (m: Member) => {
      probes.push(m.name)
      if (m.name !== 'a') return [true, 'ok']
      return [script[tick] ?? true, `tick ${tick}`]
    }
  })
  t.teardown(() => checker.stop())
  checker.start()
  await checker.firstRound
  t.same(probes, ['a', 'b', 'c'], 'the first round checks every member at once')
  t.same(events, [], '1 failure of 3: still up')
  const a = pool.members[0]
  const seen: boolean[] = [a.available]
  for (tick = 1; tick < script.length; tick++) {
    t.same(clock.pending().filter((d) => d === 1000).length, 1, `tick ${tick} is scheduled one interval later`)
    await clock.advance(1000)
    seen.push(a.available)
  }
  t.same(events, ['a down', 'a up'], 'one transition each way, logged once')
  t.same(seen, [true, true, false, false, false, false, true], 'down at the 3rd failure; a pass between failures restarts the count; up at the 2nd pass in a row')
  t.equal(probes.length, 3 * script.length, 'every member checked on every tick')
})

t.test('a probe that does not answer within timeout_ms fails on the clock, and is not overlapped', async (t) => {
  const { pool, events, clock, dispatcher } = setup(t)
  const hc = { ...pool.config.health_check!, fall: 1 }
  const hanging: Array<(v: [boolean, string]) => void> = []
  let calls = 0
  const checker = new HealthChecker(pool, hc, dispatcher, {
    clock,
    probe: (m: Member) => {
      if (m.name !== 'b') return Promise.resolve([true, 'ok'])
      calls++
      return new Promise((resolve) => hanging.push(resolve))
    }
  })
  t.teardown(() => checker.stop())
  let first = false
  void checker.firstRound.then(() => { first = true })
  checker.start()
  await flush()
  t.notOk(first, 'the first round waits for the hanging probe')
  await clock.advance(299)
  t.notOk(first, 'still waiting 1 ms before the timeout')
  t.same(events, [])
  await clock.advance(1)
  t.ok(first, 'the first round ends at the timeout')
  t.same(events, ['b down'], 'the timeout counts as a failure')
  await clock.advance(700)
  t.equal(calls, 1, 'no second probe while the first is still running')
  hanging[0]([true, 'late'])
  await flush()
  await clock.advance(1000)
  t.equal(calls, 2, 'the next tick probes again once the hung one settled')
})

t.test('stop() ends the ticks and releases anyone waiting for the first round', async (t) => {
  const { pool, clock, dispatcher, hc } = setup(t)
  const checker = new HealthChecker(pool, hc, dispatcher, { clock, probe: () => new Promise(() => undefined) })
  checker.start()
  checker.stop()
  await checker.firstRound
  t.same(clock.pending().filter((d) => d === 1000), [], 'no tick left scheduled')
})
