import t from 'tap'
import { parseConfig } from '../../src/config/load.js'
import { SplitAssigner, type SplitOptions } from '../../src/balancing/split.js'
import { SplitWindow } from '../../src/balancing/split-window.js'
import { FakeClock } from '../fixtures/fake-clock.js'

const POOLS = 'pools: { a: { members: [{ url: "http://127.0.0.1:1" }] }, b: { members: [{ url: "http://127.0.0.1:2" }] }, c: { members: [{ url: "http://127.0.0.1:3" }] } }'

function splitFrom(body: string, opts: SplitOptions = {}): SplitAssigner<string> {
  const c = parseConfig(`${POOLS}
routes:
  - name: r
    split: ${body}
`, 't.yaml', {})
  return new SplitAssigner(c.routes[0].split!, (p) => p, opts)
}

function split(variants: string, sticky = '{}', extra = ''): SplitAssigner<string> {
  return splitFrom(`{ name: exp, sticky: ${sticky}, variants: ${variants}${extra} }`)
}

/** The cookie value a Set-Cookie carries. */
function cookieOf(setCookie: string | undefined): string {
  return (setCookie ?? '').split(';')[0].split('=')[1]
}

const USERS = Array.from({ length: 20000 }, (_, u) => `user-${u}`)

function tally(s: SplitAssigner<string>, users = USERS): Map<string, string> {
  return new Map(users.map((u) => [u, s.assign(undefined, undefined, u).arm.name]))
}

function shareOf(m: Map<string, string>, name: string): number {
  let n = 0
  for (const v of m.values()) if (v === name) n++
  return n / m.size
}

t.test('A/B: 10,000 new clients, shares within 2 points, cookie keeps each client', async (t) => {
  const s = split('[{ name: control, pool: a, weight: 70 }, { name: treatment, pool: b, weight: 30 }]')
  const seen = new Map<string, number>()
  for (let client = 0; client < 10000; client++) {
    const first = s.assign(undefined, undefined, undefined)
    if (first.source !== 'new' || !first.exposure) t.fail('a client without cookie is a new assignment, with an exposure')
    seen.set(first.arm.name, (seen.get(first.arm.name) ?? 0) + 1)
    // The client returns with the cookie the proxy set: same variant every time, no new exposure.
    const cookieValue = cookieOf(first.setCookie)
    for (let visit = 0; visit < 3; visit++) {
      const again = s.assign(undefined, cookieValue, undefined)
      if (again.arm !== first.arm || again.exposure || again.setCookie !== undefined) t.fail(`client ${client} changed variant or got a new cookie`)
    }
  }
  t.ok(Math.abs((seen.get('control') ?? 0) / 10000 - 0.7) <= 0.02, `control share ${(seen.get('control') ?? 0) / 100}%`)
  t.ok(Math.abs((seen.get('treatment') ?? 0) / 10000 - 0.3) <= 0.02, `treatment share ${(seen.get('treatment') ?? 0) / 100}%`)
})

t.test('multivariate by user-id header: deterministic, within 2 points, exposure once per user', async (t) => {
  const v = '[{ name: v1, pool: a, weight: 50 }, { name: v2, pool: b, weight: 30 }, { name: v3, pool: c, weight: 20 }]'
  const s = split(v, '{ header: X-User-Id }')
  const first = new Map<string, string>()
  let exposures = 0
  for (const u of USERS) {
    const a = s.assign(undefined, undefined, u)
    if (a.source !== 'header') t.fail('assigned by header')
    if (a.exposure) exposures++
    first.set(u, a.arm.name)
  }
  t.equal(exposures, USERS.length, 'one exposure per user')
  t.equal(USERS.filter((u) => s.assign(undefined, undefined, u).exposure).length, 0, 'no exposure on repeats')
  // A second proxy instance (a new assigner) agrees for every user.
  const other = split(v, '{ header: X-User-Id }')
  let changed = 0
  for (const [u, name] of first) if (other.assign(undefined, undefined, u).arm.name !== name) changed++
  t.equal(changed, 0, 'no client changes variant')
  t.ok(Math.abs(shareOf(first, 'v1') - 0.5) <= 0.02, `v1 ${shareOf(first, 'v1')}`)
  t.ok(Math.abs(shareOf(first, 'v2') - 0.3) <= 0.02, `v2 ${shareOf(first, 'v2')}`)
  t.ok(Math.abs(shareOf(first, 'v3') - 0.2) <= 0.02, `v3 ${shareOf(first, 'v3')}`)
})

t.test('QA override header wins, even for a zero-weight variant; unknown names are ignored', async (t) => {
  const s = split('[{ name: live, pool: a, weight: 1 }, { name: dark, pool: b, weight: 0 }]')
  const pinned = cookieOf(s.assign(undefined, undefined, undefined).setCookie)
  t.equal(s.assign('dark', pinned, undefined).arm.name, 'dark')
  t.equal(s.assign('dark', pinned, undefined).source, 'override')
  t.notOk(s.assign('dark', pinned, undefined).exposure, 'an override is no exposure')
  t.equal(s.assign('nope', pinned, undefined).arm.name, 'live')
  const drawn = new Set(Array.from({ length: 1000 }, () => s.assign(undefined, undefined, undefined).arm.name))
  t.same([...drawn], ['live'], 'weight 0 is never drawn')
  const legacy = s.assign(undefined, 'dark', undefined)
  t.equal(legacy.arm.name, 'live', 'a cookie naming a variant at weight 0 is drawn afresh')
  t.equal(legacy.source, 'new')
  t.match(s.assign(undefined, 'live', undefined), { arm: { name: 'live' }, source: 'cookie', exposure: false, setCookie: undefined }, 'a cookie naming a live variant (from before client ids, or set by hand) still pins it')
})

t.test('adding a variant moves only the share it takes; a new salt reshuffles', async (t) => {
  const before = tally(split('[{ name: a, pool: a, weight: 50 }, { name: b, pool: b, weight: 50 }]', '{ header: X-User-Id }'))
  // c takes 10%: a and b keep 45% each.
  const after = tally(split('[{ name: a, pool: a, weight: 45 }, { name: b, pool: b, weight: 45 }, { name: c, pool: c, weight: 10 }]', '{ header: X-User-Id }'))
  let moved = 0
  let movedElsewhere = 0
  for (const [u, v] of before) {
    const now = after.get(u)
    if (now === v) continue
    moved++
    if (now !== 'c') movedElsewhere++
  }
  const c = shareOf(after, 'c')
  t.ok(Math.abs(c - 0.1) <= 0.01, `c's share ${c}`)
  t.equal(movedElsewhere, 0, 'every client that moved went to the new variant')
  t.equal(moved / USERS.length, c, `moved ${(moved / USERS.length * 100).toFixed(2)}% = c's share`)
  t.comment(`added a 10% variant: ${(moved / USERS.length * 100).toFixed(2)}% of 20,000 users moved (contiguous ranges in config order would move 15%)`)

  // Listing the variants in another order changes nothing: a variant's score depends on its name.
  const reordered = tally(split('[{ name: b, pool: b, weight: 45 }, { name: c, pool: c, weight: 10 }, { name: a, pool: a, weight: 45 }]', '{ header: X-User-Id }'))
  t.equal([...after].filter(([u, v]) => reordered.get(u) !== v).length, 0, 'variant order does not matter')

  const salted = tally(split('[{ name: a, pool: a, weight: 50 }, { name: b, pool: b, weight: 50 }]', '{ header: X-User-Id }', ', salt: spring-2026'))
  const reshuffled = [...before].filter(([u, v]) => salted.get(u) !== v).length / USERS.length
  t.ok(Math.abs(reshuffled - 0.5) <= 0.02, `a new salt reshuffles (${reshuffled} moved, 0.5 expected)`)
})

t.test('holdout: its share gets the control, labelled holdout, sticky, outside the experiment', async (t) => {
  const s = splitFrom('{ name: exp, sticky: { header: X-User-Id }, holdout: 10, control: base, variants: [{ name: treat, pool: b, weight: 50 }, { name: base, pool: a, weight: 50 }] }')
  const m = tally(s)
  const held = shareOf(m, 'holdout')
  t.ok(Math.abs(held - 0.1) <= 0.01, `holdout ${held}`)
  t.ok(Math.abs(shareOf(m, 'treat') - 0.45) <= 0.015, `treat ${shareOf(m, 'treat')}`)
  const u = [...m].find(([, v]) => v === 'holdout')![0]
  const a = s.assign(undefined, undefined, u)
  t.equal(a.arm.name, 'holdout')
  t.equal(a.arm.target, 'a', 'the control named by `control:` serves held-out clients')
  t.equal(a.arm.index, 2, 'the holdout counts in its own window slot')
  // A promotion gives the promoted variant everyone, except the holdout.
  s.promote('treat')
  const promoted = tally(s)
  t.equal(shareOf(promoted, 'holdout'), held, 'the holdout stays held out')
  t.equal(shareOf(promoted, 'treat'), 1 - held, 'every other client gets the promoted variant')
})

t.test('ramp schedule follows the clock: 1% -> 5% -> 25% -> 50%, clients only move into the treatment', async (t) => {
  const clock = new FakeClock(Date.parse('2026-05-01T08:00:00Z'))
  const s = splitFrom(`{ name: exp, sticky: { header: X-User-Id }, variants: [{ name: a, pool: a, weight: 100 }, { name: b, pool: b, weight: 0 }],
      ramp: [{ at: 10m, weights: { a: 99, b: 1 } }, { at: "2026-05-01T09:00:00Z", weights: { a: 75, b: 25 } }, { at: 30m, weights: { a: 95, b: 5 } }, { at: 2h, weights: { a: 50, b: 50 } }] }`, { now: () => clock.now() })
  // [minute, b's share, stage]: "10m", "30m" and "2h" count from the start; 09:00Z is 60 min in.
  const expect = [[10, 0.01, 0], [30, 0.05, 1], [60, 0.25, 2], [120, 0.5, 3]] as const
  let prev = tally(s)
  t.equal(shareOf(prev, 'b'), 0, 'before the first stage: the variants\' own weights')
  t.equal(s.rampStage().stage, -1)
  let minute = 0
  for (const [at, share, stage] of expect) {
    await clock.advance((at - minute) * 60_000 - 1)
    t.equal(s.rampStage().stage, stage - 1, `just before ${at} min the previous stage holds`)
    await clock.advance(1)
    minute = at
    t.equal(s.rampStage().stage, stage, `stage ${stage} at ${at} min`)
    const now = tally(s)
    const b = shareOf(now, 'b')
    t.ok(Math.abs(b - share) <= Math.max(0.003, share * 0.1), `b's share at ${at} min: ${b} (${share} configured)`)
    t.equal([...prev].filter(([u, v]) => v === 'b' && now.get(u) !== 'b').length, 0, 'nobody leaves the treatment as it ramps up')
    prev = now
  }
  t.equal(s.rampStage().nextAtMs, Infinity, 'the last stage stays')
})

t.test('guardrail: a variant with more 5xx than the control over the window goes to weight 0', async (t) => {
  const clock = new FakeClock(Date.parse('2026-05-01T08:00:00Z'))
  const s = splitFrom(`{ name: exp, sticky: { header: X-User-Id }, variants: [{ name: a, pool: a, weight: 50 }, { name: b, pool: b, weight: 50 }, { name: c, pool: c, weight: 1 }],
      guardrail: { window_s: 30, min_requests: 100, max_5xx_ratio_delta: 0.05 } }`, { now: () => clock.now() })
  const events: string[] = []
  s.state.onEvent = (e) => events.push(`${e.action} ${e.variant ?? ''} ${e.reason ?? ''}`.trim())
  const bUser = USERS.find((u) => s.assign(undefined, undefined, u).arm.name === 'b')!
  const bCookie = cookieOf([...Array(50)].map(() => s.assign(undefined, undefined, undefined)).find((x) => x.arm.name === 'b')!.setCookie)
  // 99 requests each: below min_requests, nothing happens even at 100% 5xx.
  for (let i = 0; i < 99; i++) { s.observe(0, 200, 0.01); s.observe(1, 500, 0.01) }
  await clock.advance(1000)
  s.observe(0, 200, 0.01)
  t.same(events, [], 'fewer than min_requests: no verdict')
  // b reaches min_requests (99 5xx of 199); c has 4 of 200, within the 5 point margin.
  s.observe(0, 200, 0.01)
  for (let i = 0; i < 100; i++) s.observe(1, 200, 0.01)
  for (let i = 0; i < 200; i++) s.observe(2, i < 8 ? 500 : 200, 0.01)
  t.same(events, [], 'judged once a second, not per request')
  await clock.advance(1000)
  s.observe(0, 200, 0.01)
  t.same(events, ['rollback b 5xx'], 'b rolled back when the next second opens; c (4% 5xx) stays')
  t.equal(s.weights()[1], 0, 'its weight in force is 0')
  t.not(s.assign(undefined, undefined, bUser).arm.name, 'b', 'its header clients are drawn again')
  const moved = s.assign(undefined, bCookie, undefined)
  t.not(moved.arm.name, 'b', 'its cookie clients too')
  t.ok(moved.exposure && moved.previous === 'b' && cookieOf(moved.setCookie).endsWith(`.${moved.arm.name}`), 'a moved client is a new exposure and gets its cookie updated')
  t.equal(s.assign('b', undefined, bUser).arm.name, 'b', 'the override still reaches it (to debug it)')

  s.reset()
  t.same(events.at(-1), 'reset', 'reset logged')
  t.equal(s.weights()[1], 50, 'reset: weight back')
  t.equal(s.assign(undefined, undefined, bUser).arm.name, 'b', 'its clients come back')
  t.same(s.state.window.stats(clock.now())[1].requests, 0, 'the window that condemned it is forgotten')

  // Old failures leave the window: 100% 5xx 31 s ago does not count.
  for (let i = 0; i < 200; i++) { s.observe(0, 200, 0.01); s.observe(1, 503, 0.01) }
  await clock.advance(31_000)
  for (let i = 0; i < 100; i++) { s.observe(0, 200, 0.01); s.observe(1, 200, 0.01) }
  await clock.advance(1000)
  s.observe(0, 200, 0.01)
  t.equal(s.state.rolledBack.size, 0, 'failures older than window_s are not counted')
})

t.test('guardrail on latency: p99 over the control times max_p99_ratio and by min_p99_delta_ms', async (t) => {
  const clock = new FakeClock(Date.parse('2026-05-01T08:00:00Z'))
  const make = () => splitFrom(`{ name: exp, variants: [{ name: a, pool: a, weight: 50 }, { name: b, pool: b, weight: 50 }, { name: c, pool: c, weight: 50 }],
      guardrail: { window_s: 10, min_requests: 50, max_p99_ratio: 2, min_p99_delta_ms: 50 } }`, { now: () => clock.now() })
  const s = make()
  for (let i = 0; i < 200; i++) {
    s.observe(0, 200, 0.02)
    s.observe(1, 200, i < 190 ? 0.02 : 0.4) // 5% slow: p99 400 ms
    s.observe(2, 200, 0.035) // 1.75x: within the ratio
  }
  await clock.advance(1000)
  s.observe(0, 200, 0.02)
  t.same([...s.state.rolledBack.keys()], ['b'], 'only the slow variant is rolled back')
  t.equal(s.state.rolledBack.get('b')?.reason, 'latency')
  t.match(s.state.rolledBack.get('b')?.detail, /p99 <=500 ms against the control's <=20 ms/)
  // A reload with the same config keeps the state; another config starts afresh.
  const again = splitFrom(`{ name: exp, variants: [{ name: a, pool: a, weight: 50 }, { name: b, pool: b, weight: 50 }, { name: c, pool: c, weight: 50 }],
      guardrail: { window_s: 10, min_requests: 50, max_p99_ratio: 2, min_p99_delta_ms: 50 } }`, { now: () => clock.now(), previous: s.state })
  t.equal(again.state, s.state, 'unchanged split: same state')
  t.equal(again.weights()[1], 0, 'still rolled back after the reload')
  const changed = splitFrom('{ name: exp, variants: [{ name: a, pool: a, weight: 50 }, { name: b, pool: b, weight: 60 }] }', { now: () => clock.now(), previous: s.state })
  t.not(changed.state, s.state, 'changed split: a new state')
})

t.test('window: per-second ring, p99 by bucket bound', async (t) => {
  const w = new SplitWindow(2, 5)
  t.ok(w.record(0, 200, 3, 10_000), 'a new second opens')
  t.notOk(w.record(0, 200, 3, 10_500), 'same second')
  for (let i = 0; i < 98; i++) w.record(0, 200, 3, 11_000)
  w.record(0, 502, 800, 12_000)
  const s = w.stats(12_000)
  t.same(s[0], { requests: 101, errors: 1, errorRatio: 1 / 101, p99Ms: 3 })
  t.same(s[1], { requests: 0, errors: 0, errorRatio: 0, p99Ms: null })
  t.equal(w.stats(15_999)[0].requests, 99, 'at second 15 the window holds seconds 11 to 15')
  t.equal(w.stats(16_000)[0].requests, 1, 'at second 16, seconds 10 and 11 have left it')
  w.record(1, 200, 20_000, 17_000)
  t.equal(w.stats(17_000)[1].p99Ms, Infinity, 'past the last bound')
  t.equal(w.stats(17_000)[0].requests, 0)
})

t.test('config: control, holdout, ramp and shared split names are checked', async (t) => {
  const bad = (split: string, extra = '') => {
    try {
      parseConfig(`${POOLS}\nroutes:\n  - name: r\n    split: ${split}\n${extra}`, 'x.yaml', {})
      return ''
    } catch (err) {
      return (err as Error).message
    }
  }
  t.match(bad('{ name: e, control: zz, variants: [{ name: a, pool: a, weight: 1 }] }'), /routes\[0\]\.split\.control: expected one of the variant names \("a"\), got "zz"/)
  t.match(bad('{ name: e, holdout: 5, variants: [{ name: holdout, pool: a, weight: 1 }] }'), /split\.holdout: a variant is named "holdout"/)
  t.match(bad('{ name: e, holdout: 101, variants: [{ name: a, pool: a, weight: 1 }] }'), /split\.holdout: expected a number <= 100/)
  t.match(bad('{ name: e, variants: [{ name: a, pool: a, weight: 1 }], ramp: [{ at: tomorrow, weights: { a: 1 } }] }'), /ramp\[0\]\.at: expected an ISO time .* got "tomorrow"/)
  t.match(bad('{ name: e, variants: [{ name: a, pool: a, weight: 1 }], ramp: [{ at: 1h, weights: { x: 1 } }] }'), /ramp\[0\]\.weights\.x: expected one of the variant names/)
  t.match(bad('{ name: e, variants: [{ name: a, pool: a, weight: 1 }], ramp: [{ at: 1h, weights: { a: 0 } }] }'), /ramp\[0\]\.weights: expected the stage's weights to add up to more than 0/)
  t.match(bad('{ name: e, variants: [{ name: a, pool: a, weight: 1 }], guardrail: { max_5xx_ratio_delta: 2 } }'), /guardrail\.max_5xx_ratio_delta: expected a number <= 1/)
  t.match(bad('{ name: e, variants: [{ name: a, pool: a, weight: 1 }] }', '  - name: r2\n    match: { path_prefix: /x }\n    split: { name: e, variants: [{ name: a, pool: b, weight: 1 }] }\n'), /routes\[1\]\.split\.name: split "e" is also defined by routes\[0\] with other settings/)
  t.equal(bad('{ name: e, variants: [{ name: a, pool: a, weight: 1 }] }', '  - name: r2\n    match: { path_prefix: /x }\n    split: { name: e, variants: [{ name: a, pool: a, weight: 1 }] }\n'), '', 'the same split on two routes is fine')
})
