/** The drain calls a control applies again after a reload, and forgets with their member. */
import t from 'tap'
import { DrainIntents } from '../../src/admin/drain-intents.js'
import { parseConfig } from '../../src/config/load.js'

t.test('DrainIntents: the last call per member; pruned with the config', async (t) => {
  const d = new DrainIntents()
  d.set('web', 'a', true)
  d.set('web', '127.0.0.1:9002', true)
  d.set('web', 'a', false)
  d.set('gone', 'x', true)
  t.same(d.all(), [{ pool: 'web', member: 'a', drained: false }, { pool: 'web', member: '127.0.0.1:9002', drained: true }, { pool: 'gone', member: 'x', drained: true }])
  t.same(d.drained().map((i) => i.member), ['127.0.0.1:9002', 'x'])
  const config = parseConfig(`
pools: { web: { members: [{ name: a, url: "http://127.0.0.1:9001" }, { url: "http://127.0.0.1:9002" }] } }
routes: [{ name: all, match: {}, pool: web }]
`, 'test.yaml', {})
  d.prune(config)
  t.same(d.all(), [{ pool: 'web', member: 'a', drained: false }, { pool: 'web', member: '127.0.0.1:9002', drained: true }], 'a pool the config no longer has is forgotten; unnamed members go by host:port')
  d.prune(parseConfig(`
pools: { web: { members: [{ name: a, url: "http://127.0.0.1:9001" }] } }
routes: [{ name: all, match: {}, pool: web }]
`, 'test.yaml', {}))
  t.same(d.drained(), [], 'a member removed from the config is forgotten')
})
