import t from 'tap'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Ajv } from 'ajv'
import { parse } from 'yaml'
import { configJsonSchema, configJsonSchemaText } from '../../src/config/json-schema.js'
import { isDuration, type SchemaNode } from '../../src/config/schema-walk.js'

// Tests run from dist/test/config; the repository root is three levels up.
const root = (p: string): string => fileURLToPath(new URL(`../../../${p}`, import.meta.url))

t.test('schema/upstreams.schema.json is what scripts/generate-schema.mjs writes now', async (t) => {
  const committed = readFileSync(root('schema/upstreams.schema.json'), 'utf8')
  t.ok(committed === configJsonSchemaText(), 'stale: run `npx tsc -p tsconfig.json && node scripts/generate-schema.mjs` and commit schema/upstreams.schema.json')
})

const ajv = new Ajv({ allErrors: true, strict: false })
const validate = ajv.compile(configJsonSchema())
const errorsOf = (yaml: string): string[] => (validate(parse(yaml)) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ''}`))

t.test('it accepts what the loader accepts', async (t) => {
  t.same(errorsOf(readFileSync(root('upstreams.yaml'), 'utf8')), [], 'the shipped upstreams.yaml, ${VAR} expressions and all')
  const rest = 'pools: { web: { members: [{ url: "http://127.0.0.1:1" }], timeouts: { connect_ms: 2s, request_ms: 30000 } } }\nroutes:\n  - { name: r, match: {}, pool: web, compress: true, websocket: false, timeout_ms: 1.5s }\n'
  t.same(errorsOf(`listen: { port: 8080 }\n${rest}`), [], 'listen as a mapping, shorthands, duration strings')
  t.same(errorsOf(`listen: [{ port: 80 }, { port: 443, tls: { self_signed: true } }]\n${rest}`), [], 'listen as a list')
  t.same(errorsOf(`workers: "2"\nlisten: { port: "\${PORT:-8080}", h2c: "true" }\nlimits: { headers_timeout_ms: "\${T:-10s}" }\nsidecars: [{ name: s, command: x, args: [--port, 12000] }]\n${rest}`), [], 'values the loader coerces')
  t.same(errorsOf(`routes: []\npools: {}\n`), [], 'only pools and routes are required')
})

t.test('it rejects what the loader rejects', async (t) => {
  const rest = 'pools: { web: { members: [{ url: "http://127.0.0.1:1" }] } }\nroutes: []\n'
  for (const bad of ['listen: { hots: x }', 'listen: { port: 99999 }', 'limits: { headers_timeout_ms: ten }', 'workers:', 'limits: { shutdown_timeout_ms: 1.5 }', 'logging: { level: loud }']) {
    t.not(errorsOf(`${bad}\n${rest}`).length, 0, bad)
  }
})

t.test('it has $schema, $id and title, no TypeBox leftovers, and every *_ms key is a duration', async (t) => {
  const s = configJsonSchema()
  t.equal(s.$schema, 'http://json-schema.org/draft-07/schema#')
  t.match(s.$id, /upstreams\.schema\.json$/)
  t.equal(s.title, 'Switchyard upstreams.yaml')
  t.notMatch(configJsonSchemaText(), /"\[object|Symbol|"kind"/i)
  const { ConfigSchema } = await import('../../src/config/schema.js')
  const msKeys: string[] = []
  const walk = (n: SchemaNode, at: string): void => {
    for (const [k, v] of Object.entries((n.properties ?? {}) as Record<string, SchemaNode>)) {
      if (k.endsWith('_ms')) { msKeys.push(`${at}.${k}`); t.ok(isDuration(v), `${at}.${k} takes a duration`) }
      walk(v, `${at}.${k}`)
    }
    for (const v of Object.values((n.patternProperties ?? {}) as Record<string, SchemaNode>)) walk(v, `${at}.*`)
    if (n.items !== undefined) walk(n.items as SchemaNode, `${at}[]`)
  }
  walk(ConfigSchema as unknown as SchemaNode, '')
  t.ok(msKeys.length >= 25, `${msKeys.length} duration keys`)
})
