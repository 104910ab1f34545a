/** `logging.format` in the file: its default, its values, a wrong one reported with the right ones. */
import t from 'tap'
import { ConfigError, parseConfig } from '../../src/config/load.js'

const BASE = 'pools: { web: { members: [{ url: "http://127.0.0.1:9001" }] } }\nroutes: [{ name: all, pool: web }]\n'

t.test('logging.format defaults to auto and takes json and pretty', async (t) => {
  t.equal(parseConfig(BASE, 'a.yaml', {}).logging.format, 'auto')
  t.equal(parseConfig(`${BASE}logging: { format: json }\n`, 'a.yaml', {}).logging.format, 'json')
  t.equal(parseConfig(`${BASE}logging: { level: debug, format: pretty }\n`, 'a.yaml', {}).logging.format, 'pretty')
  t.equal(parseConfig(`${BASE}logging: { format: "\${LOG_FORMAT:-json}" }\n`, 'a.yaml', {}).logging.format, 'json', 'from the environment, with a default')
})

t.test('a wrong logging.format names the right ones', async (t) => {
  const err = t.throws(() => parseConfig(`${BASE}logging: { format: text }\n`, 'bad.yaml', {})) as ConfigError
  t.ok(err instanceof ConfigError)
  t.match(err.message, /bad\.yaml:3:\d+: logging\.format: expected one of "auto", "json", "pretty", got "text"/)
})
