/**
 * The JSON Schema of upstreams.yaml for editors (schema/upstreams.schema.json, written by
 * scripts/generate-schema.mjs). The TypeBox schema is JSON Schema already; what an editor needs
 * besides is what the loader accepts before that schema sees the data:
 * - `${VAR}` and `${VAR:-default}` in any value (interpolation comes first);
 * - scalars as the loader coerces them (`port: "8080"`, `args: [--port, 12000]`);
 * - the shorthands `listen: {...}` (one listener), a route's `compress: true`, `websocket: false`
 *   and `access_log: false`, and `logging.access_log: true`;
 * - keys with a default may be left out (TypeBox lists every non-optional key as required).
 */
import { ConfigSchema } from './schema.js'
import { isDuration, isMapping, type SchemaNode } from './schema-walk.js'

export const SCHEMA_ID = 'urn:switchyard:upstreams.schema.json'

/** A value the environment supplies when the file is loaded. */
const FROM_ENV: SchemaNode = {
  type: 'string',
  pattern: '\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}',
  description: 'replaced from the environment when the file is loaded: ${VAR} or ${VAR:-default}'
}

/** Strings the loader's type coercion turns into a value of this type. */
const AS_STRING: Record<string, SchemaNode> = {
  integer: { type: 'string', pattern: '^-?[0-9]+$' },
  number: { type: 'string', pattern: '^-?[0-9]+(\\.[0-9]+)?$' },
  boolean: { type: 'string', enum: ['true', 'false'] }
}

/** Written once under `definitions`, referred to from every leaf. */
const DEFINITIONS: Record<string, SchemaNode> = {
  fromEnv: FROM_ENV,
  integerText: AS_STRING.integer,
  numberText: AS_STRING.number,
  booleanText: AS_STRING.boolean
}
const ref = (name: keyof typeof DEFINITIONS & string): SchemaNode => ({ $ref: `#/definitions/${name}` })
const ENV = ref('fromEnv')
const TEXT: Record<string, SchemaNode> = { integer: ref('integerText'), number: ref('numberText'), boolean: ref('booleanText') }

/** A leaf that also accepts `${VAR}` and the loader's coercions; default and description stay outside, for hovers. */
function leaf(s: SchemaNode): SchemaNode {
  const { default: def, description, ...rest } = s
  const outer: SchemaNode = {}
  if (description !== undefined) outer.description = description
  if (def !== undefined) outer.default = def
  let branches: SchemaNode[]
  if (isDuration(s)) {
    branches = [...(rest.anyOf as SchemaNode[]), TEXT.integer, ENV]
    delete rest.anyOf
  } else if (rest.type === 'string' && rest.enum === undefined && rest.pattern === undefined) {
    // Any string, ${VAR} included; numbers and booleans are read as their text.
    return { ...outer, ...rest, type: ['string', 'number', 'boolean'] }
  } else if (rest.type === 'string' && rest.enum === undefined) {
    branches = [{ ...rest, type: ['string', 'number', 'boolean'] }, ENV]
  } else if (typeof rest.type === 'string' && TEXT[rest.type] !== undefined) {
    branches = [rest, TEXT[rest.type], ENV]
  } else {
    branches = [rest, ENV]
  }
  return { ...outer, anyOf: branches }
}

function transform(s: SchemaNode): SchemaNode {
  if (isDuration(s)) return leaf(s)
  if (Array.isArray(s.anyOf)) return { ...s, anyOf: (s.anyOf as SchemaNode[]).map(transform) }
  if (s.type === 'object') {
    const out: SchemaNode = { ...s }
    if (isMapping(s.properties)) {
      const props: Record<string, SchemaNode> = {}
      for (const [k, v] of Object.entries(s.properties)) props[k] = transform(v as SchemaNode)
      out.properties = props
      const required = (Array.isArray(s.required) ? s.required as string[] : []).filter((k) => (s.properties as Record<string, SchemaNode>)[k]?.default === undefined)
      if (required.length > 0) out.required = required
      else delete out.required
    }
    if (isMapping(s.patternProperties)) {
      out.patternProperties = Object.fromEntries(Object.entries(s.patternProperties).map(([k, v]) => [k, transform(v as SchemaNode)]))
    }
    return out
  }
  if (s.type === 'array') return { ...s, items: isMapping(s.items) ? transform(s.items) : s.items }
  return leaf(s)
}

/** `compress: true`, `websocket: false`: a boolean beside the mapping. */
function orBoolean(s: SchemaNode, means: string): SchemaNode {
  const { default: def, description, ...rest } = s
  return {
    ...(description === undefined ? {} : { description }),
    ...(def === undefined ? {} : { default: def }),
    anyOf: [{ description: means, ...leaf({ type: 'boolean' }) }, rest]
  }
}

export function configJsonSchema(): SchemaNode {
  // JSON has no symbols: TypeBox's [Kind] and [OptionalKind] markers are left behind.
  const root = transform(JSON.parse(JSON.stringify(ConfigSchema)) as SchemaNode)
  const props = root.properties as Record<string, SchemaNode>
  const { default: listenDefault, description: listenDescription, ...listenList } = props.listen
  props.listen = { description: listenDescription, default: listenDefault, anyOf: [listenList.items as SchemaNode, listenList] }
  const route = (props.routes.items as SchemaNode).properties as Record<string, SchemaNode>
  route.compress = orBoolean(route.compress, 'true: compress with the default settings; false: do not')
  route.websocket = orBoolean(route.websocket, 'false: refuse WebSocket upgrades on this route; true: the default settings')
  route.access_log = orBoolean(route.access_log, 'false: no access log lines for this route; true: the default settings')
  const logging = props.logging.properties as Record<string, SchemaNode>
  logging.access_log = orBoolean(logging.access_log, 'true: the access log on with the default settings (JSON lines on stdout); false: off')
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: SCHEMA_ID,
    title: 'Switchyard upstreams.yaml',
    description: 'Configuration of the Switchyard reverse proxy: listeners, pools, routes, cache, sidecars. Generated from src/config/schema.ts by scripts/generate-schema.mjs; see "Configuration reference" in README.md.',
    ...root,
    definitions: DEFINITIONS
  }
}

/** The file's text: what scripts/generate-schema.mjs writes and the test compares. */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`
}
