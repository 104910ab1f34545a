/** The retry budget on a fake clock: a share of recent requests, a floor per second, a sliding window. */
import t from 'tap'
import { RetryBudget } from '../../src/upstreams/retry-budget.js'
import { FakeClock } from '../fixtures/fake-clock.js'

t.test('retries may add percent of the window\'s requests', async (t) => {
  const clock = new FakeClock()
  const b = new RetryBudget(20, 0, 10000, () => clock.now())
  for (let i = 0; i < 10; i++) b.recordRequest()
  t.equal(b.tryAcquire(), true)
  t.equal(b.tryAcquire(), true)
  t.equal(b.tryAcquire(), false, '20% of 10 requests is 2 retries')
  await clock.advance(5000)
  t.equal(b.tryAcquire(), false, 'still inside the window')
  await clock.advance(5001)
  t.equal(b.tryAcquire(), false, 'the window slid past: no recent requests, no budget')
  for (let i = 0; i < 5; i++) b.recordRequest()
  t.equal(b.tryAcquire(), true, '20% of 5 requests is one retry')
  t.equal(b.tryAcquire(), false)
})

t.test('min_per_second lets a quiet pool retry', async (t) => {
  const clock = new FakeClock()
  const b = new RetryBudget(0, 3, 2000, () => clock.now())
  const got = Array.from({ length: 8 }, () => b.tryAcquire())
  t.same(got, [true, true, true, true, true, true, false, false], '3 per second over a 2 s window')
  await clock.advance(1000)
  t.equal(b.tryAcquire(), false, 'one second later the retries are still in the window')
  await clock.advance(1000)
  t.equal(b.tryAcquire(), true, 'two seconds later they left it')
})
