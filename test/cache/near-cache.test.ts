import t from 'tap'
import { NearCache } from '../../src/cache/near-cache.js'

/** A cache with a settable clock. */
function make(maxBytes: number, maxPending?: number): { cache: NearCache<string>; clock: { now: number } } {
  const clock = { now: 1_000 }
  return { cache: new NearCache<string>({ maxBytes, now: () => clock.now, maxPending }), clock }
}

/** begin + fill in one go, for tests that are not about races. */
function put(cache: NearCache<string>, key: string, value: string, size: number, expiresAt?: number): void {
  cache.begin(key).fill(value, size, expiresAt)
}

t.test('evicts the least recently used entries by bytes (size + key length)', async (t) => {
  const { cache } = make(100)
  put(cache, 'a', 'A', 30)
  put(cache, 'b', 'B', 30)
  put(cache, 'c', 'C', 30)
  t.same(cache.stats(), { entries: 3, bytes: 93, pending: 0 })
  t.equal(cache.get('a'), 'A', 'a hit makes a the most recent')
  put(cache, 'd', 'D', 30)
  t.equal(cache.get('b'), undefined, 'b, least recently used, was evicted')
  t.same([cache.get('a'), cache.get('c'), cache.get('d')], ['A', 'C', 'D'])
  t.same(cache.stats(), { entries: 3, bytes: 93, pending: 0 })
  put(cache, 'big', 'X', 90)
  t.same(cache.stats(), { entries: 1, bytes: 93, pending: 0 }, 'a large entry evicts as many as needed')
  t.equal(cache.get('big'), 'X')
})

t.test('a refill of a key replaces its value and its bytes', async (t) => {
  const { cache } = make(100)
  put(cache, 'k', 'one', 10)
  put(cache, 'k', 'two', 20)
  t.equal(cache.get('k'), 'two')
  t.same(cache.stats(), { entries: 1, bytes: 21, pending: 0 })
})

t.test('entries expire at expiresAt', async (t) => {
  const { cache, clock } = make(1000)
  put(cache, 'k', 'v', 1, 2_000)
  put(cache, 'forever', 'v', 1)
  clock.now = 1_999
  t.equal(cache.get('k'), 'v', 'fresh until expiresAt')
  clock.now = 2_000
  t.equal(cache.get('k'), undefined, 'gone at expiresAt')
  t.same(cache.stats(), { entries: 1, bytes: 8, pending: 0 }, 'the expired entry was dropped with its bytes')
  t.equal(cache.get('forever'), 'v', 'no expiresAt: no expiry')
  put(cache, 'late', 'v', 1, 2_000)
  t.equal(cache.get('late'), undefined, 'a fill that is already expired is not stored')
})

t.test('an invalidation poisons the open tickets of its key', async (t) => {
  const { cache } = make(1000)
  put(cache, 'k', 'old', 1)
  const before = cache.begin('k')
  const other = cache.begin('other')
  t.equal(cache.stats().pending, 2)
  cache.invalidate('k')
  t.equal(cache.get('k'), undefined, 'the entry is dropped')
  before.fill('stale', 1)
  t.equal(cache.get('k'), undefined, 'a read that started before the invalidation is not stored')
  other.fill('o', 1)
  t.equal(cache.get('other'), 'o', 'tickets of other keys are unaffected')
  const after = cache.begin('k')
  after.fill('new', 1)
  t.equal(cache.get('k'), 'new', 'a read that started after the invalidation is stored')
  t.equal(cache.stats().pending, 0, 'no open tickets left behind')
})

t.test('an invalidation between two reads of a key poisons only the earlier one', async (t) => {
  const { cache } = make(1000)
  const first = cache.begin('k')
  cache.invalidate('k')
  const second = cache.begin('k')
  second.fill('fresh', 1)
  first.fill('stale', 1)
  t.equal(cache.get('k'), 'fresh')
  t.equal(cache.stats().pending, 0)
})

t.test('clear drops everything and poisons every open ticket', async (t) => {
  const { cache } = make(1000)
  put(cache, 'a', 'A', 1)
  const a = cache.begin('a')
  const b = cache.begin('b')
  cache.clear()
  t.same(cache.stats(), { entries: 0, bytes: 0, pending: 0 })
  a.fill('A2', 1)
  b.fill('B', 1)
  t.same(cache.stats(), { entries: 0, bytes: 0, pending: 0 }, 'fills begun before clear are dropped')
  cache.begin('a').fill('A3', 1)
  t.equal(cache.get('a'), 'A3', 'fills begun after clear are stored')
})

t.test('values larger than maxBytes are not stored and evict nothing', async (t) => {
  const { cache } = make(10)
  put(cache, 'a', 'A', 5)
  put(cache, 'k', 'huge', 10) // 10 + key length 1 > 10
  t.equal(cache.get('k'), undefined)
  t.equal(cache.get('a'), 'A', 'the resident entry survived')
  put(cache, 'k', 'fits', 9)
  t.equal(cache.get('k'), 'fits', 'exactly maxBytes fits')
  t.same(cache.stats(), { entries: 1, bytes: 10, pending: 0 })
  put(cache, 'n', 'nan', Number.NaN)
  put(cache, 'm', 'neg', -5)
  t.same([cache.get('n'), cache.get('m')], [undefined, undefined], 'nonsense sizes are not stored')
  const zero = make(0).cache
  put(zero, 'k', 'v', 0)
  t.same(zero.stats(), { entries: 0, bytes: 0, pending: 0 }, 'maxBytes 0 stores nothing')
})

t.test('a ticket fills at most once; cancel ends it without storing', async (t) => {
  const { cache } = make(1000)
  const ticket = cache.begin('k')
  ticket.fill('one', 1)
  cache.invalidate('k')
  ticket.fill('two', 1)
  t.equal(cache.get('k'), undefined, 'a second fill is a no-op')
  const cancelled = cache.begin('c')
  const kept = cache.begin('c')
  t.equal(cache.stats().pending, 1, 'tickets of one key share one record')
  cancelled.cancel()
  t.equal(cache.stats().pending, 1, 'one ticket of the key is still open')
  cancelled.fill('x', 1)
  t.equal(cache.get('c'), undefined, 'a cancelled ticket does not fill')
  kept.fill('y', 1)
  t.equal(cache.get('c'), 'y')
  t.equal(cache.stats().pending, 0, 'the record went with the last open ticket')
  kept.cancel()
  t.equal(cache.stats().pending, 0, 'cancel after fill is harmless')
})

t.test('tickets that are never filled cannot grow memory beyond maxPending', async (t) => {
  const { cache } = make(1_000_000, 3)
  const tickets = ['a', 'b', 'c', 'd', 'e'].map((k) => cache.begin(k))
  t.equal(cache.stats().pending, 3, 'bounded')
  for (let i = 0; i < 10_000; i++) cache.begin(`abandoned${i}`)
  t.equal(cache.stats().pending, 3, 'still bounded after many abandoned tickets')
  tickets.forEach((ticket, i) => ticket.fill(`v${i}`, 1))
  t.equal(cache.get('a'), undefined, 'a ticket whose record was dropped does not fill (only a lost fill, never stale)')
  t.equal(cache.get('e'), undefined)
  const fresh = cache.begin('fresh')
  fresh.fill('f', 1)
  t.equal(cache.get('fresh'), 'f', 'a recent ticket fills')
  cache.clear()
  t.equal(cache.stats().pending, 0)
})

t.test('invalidating keys nobody reads records nothing', async (t) => {
  const { cache } = make(1000)
  for (let i = 0; i < 1000; i++) cache.invalidate(`k${i}`)
  t.same(cache.stats(), { entries: 0, bytes: 0, pending: 0 })
})

t.test('rejects nonsense options', async (t) => {
  t.throws(() => new NearCache({ maxBytes: -1 }), RangeError)
  t.throws(() => new NearCache({ maxBytes: Number.POSITIVE_INFINITY }), RangeError)
  t.throws(() => new NearCache({ maxBytes: 10, maxPending: 0 }), RangeError)
})
