import t from 'tap'
import type { Candidate } from '../../src/balancing/balancer.js'
import { createBalancer } from '../../src/balancing/registry.js'

interface M extends Candidate { index: number; id: string; weight: number; inFlight: number }
const members = (...weights: number[]): M[] => weights.map((w, i) => ({ index: i, id: `http://10.0.0.${i + 1}:80`, weight: w, inFlight: 0 }))

function counts(picks: (Candidate | undefined)[], n: number): number[] {
  const c = new Array<number>(n).fill(0)
  for (const p of picks) if (p !== undefined) c[p.index]++
  return c
}

t.test('round_robin rotates over the eligible members', async (t) => {
  const b = createBalancer('round_robin')
  const ms = members(1, 1, 1)
  t.same(Array.from({ length: 6 }, () => b.pick(ms, undefined, ms)?.index), [0, 1, 2, 0, 1, 2])
  const some = [ms[0], ms[2]]
  t.same(counts(Array.from({ length: 4 }, () => b.pick(some, undefined, ms)), 3), [2, 0, 2])
  t.equal(b.pick([], undefined, ms), undefined)
})

t.test('weighted is smooth: 5,1,1 interleaves like nginx', async (t) => {
  const b = createBalancer('weighted')
  const ms = members(5, 1, 1)
  const seq = Array.from({ length: 7 }, () => b.pick(ms, undefined, ms)?.index)
  t.same(seq, [0, 0, 1, 0, 2, 0, 0], 'nginx smooth WRR order for {a:5, b:1, c:1}')
  const c = counts(Array.from({ length: 7000 }, () => b.pick(ms, undefined, ms)), 3)
  t.same(c, [5000, 1000, 1000])
  // never more than the weight's share in a row: no bursts
  let run = 0
  let maxRun = 0
  let prev = -1
  for (let i = 0; i < 700; i++) {
    const p = b.pick(ms, undefined, ms)?.index as number
    run = p === prev ? run + 1 : 1
    prev = p
    maxRun = Math.max(maxRun, run)
  }
  t.ok(maxRun < 5, `longest run to one member is ${maxRun} (a naive weighted round-robin sends 5 in a row)`)
})

t.test('weighted stays exact on a filtered set (a member down or already tried)', async (t) => {
  const b = createBalancer('weighted')
  const ms = members(3, 2, 1)
  const without1 = [ms[0], ms[2]]
  const c = counts(Array.from({ length: 4000 }, () => b.pick(without1, undefined, ms)), 3)
  t.same(c, [3000, 0, 1000], 'weights 3:1 among the two eligible members, exactly')
  // Back to the whole pool: proportions exact again over every full cycle.
  const c2 = counts(Array.from({ length: 6000 }, () => b.pick(ms, undefined, ms)), 3)
  t.same(c2, [3000, 2000, 1000])
})

t.test('random follows weights', async (t) => {
  const b = createBalancer('random')
  const ms = members(3, 1)
  const c = counts(Array.from({ length: 20000 }, () => b.pick(ms, undefined, ms)), 2)
  t.ok(Math.abs(c[0] / 20000 - 0.75) < 0.02, `share ${c[0] / 20000}`)
  t.same(counts(Array.from({ length: 100 }, () => b.pick([ms[1]], undefined, ms)), 2), [0, 100], 'only eligible members are drawn')
})

t.test('least_request prefers the less loaded member (power of two choices)', async (t) => {
  const b = createBalancer('least_request')
  const ms = members(1, 1)
  ms[0].inFlight = 10
  const c = counts(Array.from({ length: 1000 }, () => b.pick(ms, undefined, ms)), 2)
  t.same(c, [0, 1000], 'with two members both are always compared')
  const many = members(1, 1, 1, 1)
  many[0].inFlight = 100
  const c4 = counts(Array.from({ length: 4000 }, () => b.pick(many, undefined, many)), 4)
  t.equal(c4[0], 0, 'the overloaded member never wins a comparison')
  t.ok(c4[1] > 1000 && c4[2] > 1000 && c4[3] > 1000, `even among the idle ones: ${c4.join(',')}`)
})

t.test('hash is consistent, even, and a removal moves only its share', async (t) => {
  const b = createBalancer('hash')
  const ms = members(1, 1, 1, 1)
  const keys = Array.from({ length: 10000 }, (_, i) => `user-${i}`)
  const before = keys.map((k) => b.pick(ms, k, ms)?.index)
  t.same(keys.map((k) => b.pick(ms, k, ms)?.index), before, 'same key, same member')
  const c = counts(before.map((i) => ms[i as number]), 4)
  for (const n of c) t.ok(n > 2000 && n < 3000, `share ${n}/10000 near 2500`)
  const eligible = [ms[0], ms[1], ms[3]]
  const after = keys.map((k) => b.pick(eligible, k, ms)?.index)
  let moved = 0
  for (let i = 0; i < keys.length; i++) {
    if (before[i] !== after[i]) moved++
    if (before[i] !== after[i] && before[i] !== 2) t.fail(`key ${keys[i]} moved from a member that stayed`)
  }
  t.equal(moved, c[2], 'exactly the excluded member\'s keys moved')
  t.same(keys.slice(0, 200).map((k) => b.pick(ms, k, ms)?.index), before.slice(0, 200), 'the member back: its keys return')
})

t.test('hash: removing a member from the config moves only its keys (ring keyed on the origin)', async (t) => {
  const before = members(1, 1, 1, 1)
  const after = before.slice(1).map((m, i) => ({ ...m, index: i }))
  const b1 = createBalancer('hash')
  const b2 = createBalancer('hash')
  let stayed = 0
  let movedWrongly = 0
  for (let k = 0; k < 5000; k++) {
    const key = `client-${k}`
    const was = b1.pick(before, key, before) as M
    const now = b2.pick(after, key, after) as M
    if (was.id === before[0].id) continue
    if (was.id === now.id) stayed++
    else movedWrongly++
  }
  t.equal(movedWrongly, 0, `keys of the remaining members stay put (${stayed} checked)`)
})
