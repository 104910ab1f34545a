/** Outlier ejection and panic mode on a fake clock (no sleeps). */
import t from 'tap'
import { parseConfig } from '../../src/config/load.js'
import { Pool, type HealthEvent } from '../../src/upstreams/pool.js'
import { FakeClock } from '../fixtures/fake-clock.js'

function pool(yaml: string, clock: FakeClock): { pool: Pool; events: HealthEvent[] } {
  const cfg = parseConfig(`${yaml}\nroutes: []\n`, 'test.yaml', {})
  const p = new Pool('web', cfg.pools.web, undefined, clock)
  const events: HealthEvent[] = []
  p.onHealthEvent = (e) => events.push(e)
  p.recompute()
  return { pool: p, events }
}

const FOUR = 'members: [{ url: "http://10.0.0.1" }, { url: "http://10.0.0.2" }, { url: "http://10.0.0.3" }, { url: "http://10.0.0.4" }]'

t.test('consecutive failures eject a member; each ejection of it lasts longer; it returns on time', async (t) => {
  const clock = new FakeClock()
  const { pool: p, events } = pool(`pools: { web: { ${FOUR}, outlier: { consecutive_failures: 3, base_ejection_ms: 1000, max_ejection_ms: 2500 } } }`, clock)
  const [a] = p.members
  p.recordOutcome(a, true)
  p.recordOutcome(a, true)
  p.recordOutcome(a, false)
  p.recordOutcome(a, true)
  p.recordOutcome(a, true)
  t.equal(events.length, 0, 'a success in between resets the count')
  p.recordOutcome(a, true)
  t.match(events, [{ kind: 'ejected', member: a, forMs: 1000 }])
  t.notOk(p.eligible(undefined).includes(a), 'an ejected member is not eligible')
  t.equal(p.eligible(undefined).length, 3)
  await clock.advance(999)
  t.notOk(p.eligible(undefined).includes(a), 'still out just before its time')
  await clock.advance(2)
  t.match(events.at(-1), { kind: 'returned', member: a })
  t.ok(p.eligible(undefined).includes(a), 'back after base_ejection_ms')
  for (let i = 0; i < 3; i++) p.recordOutcome(a, true)
  t.match(events.at(-1), { kind: 'ejected', forMs: 2000 }, 'the second ejection lasts twice as long')
  await clock.advance(2001)
  for (let i = 0; i < 3; i++) p.recordOutcome(a, true)
  t.match(events.at(-1), { kind: 'ejected', forMs: 2500 }, 'capped at max_ejection_ms')
})

t.test('max_ejected_percent keeps enough members in', async (t) => {
  const clock = new FakeClock()
  const { pool: p } = pool(`pools: { web: { ${FOUR}, outlier: { consecutive_failures: 1, max_ejected_percent: 50 }, panic_threshold_percent: 0 } }`, clock)
  for (const m of p.members) p.recordOutcome(m, true)
  t.equal(p.members.filter((m) => m.ejectedUntil > clock.now()).length, 2, 'two of four ejected, no more')
  t.equal(p.eligible(undefined).length, 2)
})

t.test('panic: below the threshold every member is eligible again', async (t) => {
  const clock = new FakeClock()
  const { pool: p, events } = pool(`pools: { web: { ${FOUR}, outlier: { consecutive_failures: 1, max_ejected_percent: 100 }, panic_threshold_percent: 50 } }`, clock)
  p.recordOutcome(p.members[0], true)
  p.recordOutcome(p.members[1], true)
  t.equal(p.eligible(undefined).length, 2, 'two healthy of four: at the threshold, not in panic')
  p.recordOutcome(p.members[2], true)
  t.match(events.at(-1), { kind: 'panic', on: true })
  t.equal(p.eligible(undefined).length, 4, 'in panic all members are eligible')
  await clock.advance(10001)
  t.match(events.filter((e) => e.kind === 'panic').at(-1), { on: false }, 'panic ends when members return')
})

t.test('eligible() leaves out tried members; reuse only when asked and nothing else is left', async (t) => {
  const clock = new FakeClock()
  const { pool: p } = pool('pools: { web: { members: [{ url: "http://10.0.0.1" }, { url: "http://10.0.0.2" }] } }', clock)
  const [a, b] = p.members
  t.same(p.eligible(new Set([a])), [b])
  t.same(p.eligible(new Set([a, b])), [], 'none left')
  t.same(p.eligible(new Set([a, b]), true), [a, b], 'a connection failure may go back to a tried member')
})

t.test('admission survives a reload: the new pool counts requests admitted under the old one', async (t) => {
  const clock = new FakeClock()
  const yaml = (max: number): string => `pools: { web: { members: [{ url: "http://10.0.0.1" }], max_requests: ${max}, queue: { size: 1, timeout_ms: 500 } } }`
  const { pool: old } = pool(yaml(2), clock)
  t.equal(old.admit(), true)
  t.equal(old.admit(), true)
  const cfg = parseConfig(`${yaml(2)}\nroutes: []\n`, 'test.yaml', {})
  const next = new Pool('web', cfg.pools.web, old, clock)
  const queued = next.admit()
  t.type(queued, Promise, 'the limit is still full after the reload: the request queues')
  t.equal(next.admit(), false, 'and the queue holds one')
  old.release()
  t.equal(await queued, true, 'a slot freed by a request of the old pool admits the waiter')
  const cfg3 = parseConfig(`${yaml(3)}\nroutes: []\n`, 'test.yaml', {})
  const third = new Pool('web', cfg3.pools.web, next, clock)
  t.equal(third.admit(), true, 'a raised limit applies at once')
  const waiting = third.admit()
  t.type(waiting, Promise, 'and holds: the next request queues')
  await clock.advance(501)
  t.equal(await waiting, false, 'a queued request gives up after queue.timeout_ms')
})
