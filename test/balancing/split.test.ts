import t from 'tap'
import { parseConfig } from '../../src/config/load.js'
import { SplitAssigner } from '../../src/balancing/split.js'

function split(variants: string, sticky = '{}'): SplitAssigner<string> {
  const c = parseConfig(`pools: { a: { members: [{ url: "http://127.0.0.1:1" }] }, b: { members: [{ url: "http://127.0.0.1:2" }] }, c: { members: [{ url: "http://127.0.0.1:3" }] } }
routes:
  - name: r
    split: { name: exp, sticky: ${sticky}, variants: ${variants} }
`, 't.yaml', {})
  return new SplitAssigner(c.routes[0].split!, (p) => p)
}

t.test('A/B: 10,000 new clients, shares within 2 points, cookie keeps each client', async (t) => {
  const s = split('[{ name: control, pool: a, weight: 70 }, { name: treatment, pool: b, weight: 30 }]')
  const seen = new Map<string, number>()
  for (let client = 0; client < 10000; client++) {
    const first = s.assign(undefined, undefined, undefined)
    if (first.source !== 'new') t.fail('a client without cookie is a new assignment')
    seen.set(first.variant.name, (seen.get(first.variant.name) ?? 0) + 1)
    // The client returns with the cookie the proxy set: same variant every time.
    const cookieValue = first.variant.setCookie.split(';')[0].split('=')[1]
    for (let visit = 0; visit < 3; visit++) {
      const again = s.assign(undefined, cookieValue, undefined)
      if (again.variant !== first.variant) t.fail(`client ${client} changed variant`)
    }
  }
  t.ok(Math.abs((seen.get('control') ?? 0) / 10000 - 0.7) <= 0.02, `control share ${(seen.get('control') ?? 0) / 100}%`)
  t.ok(Math.abs((seen.get('treatment') ?? 0) / 10000 - 0.3) <= 0.02, `treatment share ${(seen.get('treatment') ?? 0) / 100}%`)
})

t.test('multivariate by user-id header: deterministic, within 2 points', async (t) => {
  const s = split('[{ name: v1, pool: a, weight: 50 }, { name: v2, pool: b, weight: 30 }, { name: v3, pool: c, weight: 20 }]', '{ header: X-User-Id }')
  const first = new Map<string, string>()
  const tally: Record<string, number> = { v1: 0, v2: 0, v3: 0 }
  for (let u = 0; u < 10000; u++) {
    const a = s.assign(undefined, undefined, `user-${u}`)
    if (a.source !== 'header') t.fail('assigned by header')
    first.set(`user-${u}`, a.variant.name)
    tally[a.variant.name]++
  }
  // A second proxy instance (a new assigner) agrees for every user.
  const other = split('[{ name: v1, pool: a, weight: 50 }, { name: v2, pool: b, weight: 30 }, { name: v3, pool: c, weight: 20 }]', '{ header: X-User-Id }')
  let changed = 0
  for (const [u, v] of first) if (other.assign(undefined, undefined, u).variant.name !== v) changed++
  t.equal(changed, 0, 'no client changes variant')
  t.ok(Math.abs(tally.v1 / 10000 - 0.5) <= 0.02, `v1 ${tally.v1}`)
  t.ok(Math.abs(tally.v2 / 10000 - 0.3) <= 0.02, `v2 ${tally.v2}`)
  t.ok(Math.abs(tally.v3 / 10000 - 0.2) <= 0.02, `v3 ${tally.v3}`)
})

t.test('QA override header wins, even for a zero-weight variant; unknown names are ignored', async (t) => {
  const s = split('[{ name: live, pool: a, weight: 1 }, { name: dark, pool: b, weight: 0 }]')
  t.equal(s.assign('dark', 'live', undefined).variant.name, 'dark')
  t.equal(s.assign('dark', 'live', undefined).source, 'override')
  t.equal(s.assign('nope', 'live', undefined).variant.name, 'live')
  const drawn = new Set(Array.from({ length: 1000 }, () => s.assign(undefined, undefined, undefined).variant.name))
  t.same([...drawn], ['live'], 'weight 0 is never drawn')
  t.equal(s.assign(undefined, 'dark', undefined).variant.name, 'live', 'a cookie for a switched-off variant is re-drawn')
})
