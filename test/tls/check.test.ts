import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseConfig } from '../../src/config/load.js'
import { checkListenerTls } from '../../src/tls/check.js'
import { certDir, writePair } from './tls-fixtures.js'

t.test('checkListenerTls reports every bad file at its place in the config', async (t) => {
  const dir = await certDir(t)
  const a = await writePair(dir, 'a', ['a.test'])
  const b = await writePair(dir, 'b', ['b.test'])
  await writeFile(join(dir, 'junk.key'), 'not a key\n')
  const file = join(dir, 'upstreams.yaml')
  const config = parseConfig(`
listen:
  - port: 8443
    tls:
      certificates:
        - { cert: a.pem, key: a.key }
        - { cert: missing.pem, key: junk.key }
  - port: 8080
  - port: 9443
    tls:
      certificates:
        - { cert: b.pem, key: a.key }
      self_signed: true
pools: {}
routes: []
`, file)
  const issues = await checkListenerTls(config, dir)
  t.same(issues, [
    { path: ['listen', 0, 'tls', 'certificates', 1, 'cert'], message: `tls certificate ${join(dir, 'missing.pem')}: cannot read file (ENOENT)` },
    { path: ['listen', 0, 'tls', 'certificates', 1, 'key'], message: `tls key ${join(dir, 'junk.key')}: not a PEM private key (no -----BEGIN PRIVATE KEY----- block)` },
    { path: ['listen', 2, 'tls', 'certificates', 0, 'key'], message: `tls key ${a.key} does not match certificate ${b.cert}` }
  ])
})

t.test('checkListenerTls finds nothing wrong with good files named relative to the config file', async (t) => {
  const dir = await certDir(t)
  await writePair(dir, 'a', ['a.test'])
  const config = parseConfig('listen: { port: 8443, tls: { certificates: [{ cert: a.pem, key: a.key }] } }\npools: {}\nroutes: []\n', join(dir, 'upstreams.yaml'))
  t.same(await checkListenerTls(config, dir), [])
})
