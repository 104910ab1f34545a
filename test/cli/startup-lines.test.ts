/** The start-up lines' listener descriptions (the processes are in logging.test.ts). */
import t from 'tap'
import { parseConfig } from '../../src/config/load.js'
import { addressUrl, boundListeners, shownUrl } from '../../src/cli/startup-lines.js'

const config = parseConfig(`
listen:
  - { name: plain, host: 0.0.0.0, port: 80, redirect_https: { port: 443 } }
  - { name: secure, host: "::", port: 443, tls: { self_signed: true, alpn: [http/1.1] } }
  - { host: 10.0.0.5, port: 8080, h2c: true }
pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: [{ name: r, pool: p }]
`, 'a.yaml', {})

t.test('each listener: its name, its URL (a wildcard host shown as such), its protocols', async (t) => {
  t.same(boundListeners(config.listen, ['http://127.0.0.1:80', 'https://[::1]:443', 'http://10.0.0.5:8080']), [
    { name: 'plain', url: 'http://0.0.0.0:80', protocols: ['http/1.1'], redirect_https_port: 443 },
    { name: 'secure', url: 'https://[::]:443', protocols: ['http/1.1'] },
    { name: '10.0.0.5:8080', url: 'http://10.0.0.5:8080', protocols: ['http/1.1', 'h2c'] }
  ])
  t.same(boundListeners(config.listen, ['http://127.0.0.1:80']).length, 1, 'only the bound ones')
})

t.test('shownUrl keeps a specific address, shows a wildcard', async (t) => {
  t.equal(shownUrl('127.0.0.1', 'http://127.0.0.1:9901'), 'http://127.0.0.1:9901')
  t.equal(shownUrl('localhost', 'http://127.0.0.1:9901'), 'http://127.0.0.1:9901')
  t.equal(shownUrl('0.0.0.0', 'http://127.0.0.1:9901'), 'http://0.0.0.0:9901')
  t.equal(shownUrl('::', 'http://[::1]:9901'), 'http://[::]:9901')
})

t.test('addressUrl: a worker\'s bound address with the listener\'s scheme', async (t) => {
  t.equal(addressUrl(config.listen[0], { address: '0.0.0.0', port: 80, addressType: 4 }), 'http://0.0.0.0:80')
  t.equal(addressUrl(config.listen[1], { address: '::', port: 443, addressType: 6 }), 'https://[::]:443')
})
