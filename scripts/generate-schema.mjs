// Writes schema/upstreams.schema.json, the JSON Schema editors use for upstreams.yaml, from the
// compiled TypeBox schema (src/config/json-schema.ts). Run after a build:
//   npx tsc -p tsconfig.json && node scripts/generate-schema.mjs
// test/config/json-schema.test.ts fails while the committed file is not what this writes.
import { writeFileSync } from 'node:fs'
import process from 'node:process'
import { fileURLToPath, URL } from 'node:url'

const { configJsonSchemaText } = await import('../dist/src/config/json-schema.js')
const out = fileURLToPath(new URL('../schema/upstreams.schema.json', import.meta.url))
writeFileSync(out, configJsonSchemaText())
process.stdout.write(`wrote ${out}\n`)
