/**
 * UpstreamDispatcher across reloads: an origin whose connection options changed gets a new
 * undici pool at commit while the old one finishes its in-flight requests; an aborted build
 * leaves nothing behind; two pools naming one origin do not make it flip on every reload.
 */
import t from 'tap'
import { UpstreamDispatcher, type OriginOptions } from '../../src/upstreams/dispatcher.js'
import { startUpstream } from '../fixtures/upstream.js'
import { waitFor } from '../fixtures/proxy.js'

const A: OriginOptions = { connectTimeoutMs: 2000, maxConnections: 8, verifyTls: true, http2: false }
const B: OriginOptions = { connectTimeoutMs: 500, maxConnections: 8, verifyTls: true, http2: false }

t.test('changed options rebuild the pool at commit; the old one drains its requests', async (t) => {
  let release: (() => void) | undefined
  const up = await startUpstream('up', (req, res) => {
    if (req.url === '/slow') release = () => res.end('slow done')
    else res.end('fast')
  })
  let connections = 0
  up.server.on('connection', () => { connections++ })
  const d = new UpstreamDispatcher()
  t.teardown(async () => { await d.close(); await up.close() })
  d.ensure(up.url, A)
  t.same(d.commit(), [], 'a new origin is created, not rebuilt')
  const slow = d.fetch(up.url, { path: '/slow', method: 'GET', headers: {}, timeoutMs: 10000 })
  await waitFor(() => release !== undefined, 5000, 'the slow request to arrive')
  t.equal(connections, 1)

  d.ensure(up.url, B)
  t.same(d.optionsOf(up.url), A, 'nothing changes before commit')
  t.same(d.commit(), [up.url], 'commit rebuilds the origin whose options changed')
  t.same(d.optionsOf(up.url), B)
  const fast = await d.fetch(up.url, { path: '/fast', method: 'GET', headers: {}, timeoutMs: 5000 })
  t.equal(await fast.body.text(), 'fast')
  t.equal(connections, 2, 'the new pool opened its own connection')
  release?.()
  const r = await slow
  t.equal(r.statusCode, 200)
  t.equal(await r.body.text(), 'slow done', 'the request in flight on the old pool completed')

  d.ensure(up.url, B)
  t.same(d.commit(), [], 'the same options again: nothing rebuilt')
})

t.test('two pools naming one origin with different options: the first wins, every build', async (t) => {
  const d = new UpstreamDispatcher()
  t.teardown(() => d.close())
  const origin = 'http://127.0.0.1:1'
  for (let build = 0; build < 3; build++) {
    d.ensure(origin, A)
    d.ensure(origin, B)
    t.same(d.commit(), [], `build ${build}: not rebuilt`)
    t.same(d.optionsOf(origin), A)
  }
})

t.test('abort() closes the pools the build created and forgets its claims', async (t) => {
  const d = new UpstreamDispatcher()
  t.teardown(() => d.close())
  d.ensure('http://127.0.0.1:1', A)
  d.commit()
  d.ensure('http://127.0.0.1:1', B)
  d.ensure('http://127.0.0.1:2', A)
  await d.abort()
  t.same(d.optionsOf('http://127.0.0.1:1'), A, 'the existing origin kept its pool and options')
  t.equal(d.optionsOf('http://127.0.0.1:2'), undefined, 'the origin created by the aborted build is gone')
  t.same(d.commit(), [], 'no claim survives the abort')
})
