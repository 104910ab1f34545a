/**
 * Load upstreams.yaml: parse, interpolate, validate against the schema, check references,
 * report every problem together with file:line:col and the path inside the file, then freeze
 * (DESIGN.md habit 3).
 */
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { dirname, resolve as resolvePath } from 'node:path'
import * as zlib from 'node:zlib'
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import { LineCounter, parseDocument, isMap, isScalar, isSeq, visit, type Document, type Node as YamlNode } from 'yaml'
import { ConfigSchema, DURATION_DESCRIPTION, type Config } from './schema.js'
import { parseRampTime } from '../balancing/split-ramp.js'
import { HOLDOUT } from '../balancing/split.js'
import { interpolate, isWholeExpression, retype } from './interpolate.js'
import { checkForward, resolveForwardFiles } from './forward-checks.js'
import { childSchema, convertDurations, durationMinimum, isMapping, isRequired, type Path, type SchemaNode } from './schema-walk.js'

export interface ConfigIssue {
  /** Path inside the file as a list of keys and indexes. */
  path: (string | number)[]
  message: string
  line?: number
  col?: number
}

export class ConfigError extends Error {
  readonly file: string
  readonly issues: ConfigIssue[]
  constructor(file: string, issues: ConfigIssue[]) {
    super(formatIssues(file, issues))
    this.name = 'ConfigError'
    this.file = file
    this.issues = issues
  }
}

/** `routes[2].split.variants[1].weight` */
export function formatPath(path: (string | number)[]): string {
  let out = ''
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(p)) out += out === '' ? p : `.${p}`
    else out += `[${JSON.stringify(p)}]`
  }
  return out === '' ? '(top level)' : out
}

function formatIssues(file: string, issues: ConfigIssue[]): string {
  const lines = issues.map((i) => {
    const where = i.line === undefined ? file : `${file}:${i.line}:${i.col ?? 1}`
    return `${where}: ${formatPath(i.path)}: ${i.message}`
  })
  return `invalid configuration (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n  ${lines.join('\n  ')}`
}

// coerceTypes: a quoted "${PORT}" still fills an integer field, as docker compose allows.
// verbose: errors carry their parentSchema, whose description says what a pattern or anyOf expects.
const AJV_OPTIONS = { allErrors: true, useDefaults: true, strict: false, coerceTypes: true, verbose: true }
/**
 * The compiled validator (about 300 KB of generated code), made when a config is parsed and
 * dropped a few seconds after the last parse: kept alive in a serving process it made every
 * process.nextTick about 5x slower (76 -> 500 ns measured on Node 20), some 10% of the CPU of
 * an uncached request.
 */
let compiled: { validate: ValidateFunction; timer: NodeJS.Timeout | undefined } | undefined
function schemaValidator(): ValidateFunction {
  if (compiled === undefined) {
    const ajv = new Ajv(AJV_OPTIONS)
    compiled = { validate: ajv.compile(ConfigSchema), timer: undefined }
  }
  clearTimeout(compiled.timer)
  compiled.timer = setTimeout(() => { compiled = undefined }, 5000).unref()
  return compiled.validate
}

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new ConfigError(file, [{ path: [], message: code === 'ENOENT' ? 'file not found' : `cannot read file (${code ?? String(err)})` }])
  }
  return parseConfig(text, file, env)
}

export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const lc = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true })
  const locate = (offset: number | undefined): { line?: number; col?: number } => {
    if (offset === undefined) return {}
    const p = lc.linePos(offset)
    return { line: p.line, col: p.col }
  }
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => ({ path: [], message: `YAML syntax: ${e.message.split('\n')[0]}`, ...locate(e.pos[0]) })))
  }

  // Every kind of problem is collected, then reported together, sorted by line: interpolation,
  // empty values, the schema, durations, references. Later kinds are checked on the data as far
  // as it is usable, and say nothing about a path an earlier kind already reported.
  const interpolated: ConfigIssue[] = []
  /** Paths (formatted) of values an environment variable made empty, with the expression. */
  const emptied = new Map<string, string>()
  visit(doc, {
    Scalar(key, node, path) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('$')) return
      const raw = node.value
      const { value, missing } = interpolate(raw, env)
      for (const name of missing) {
        interpolated.push({ path: docPath(path, node), message: `environment variable ${name} is not set (use \${${name}:-default} to give a default)`, ...locate(node.range?.[0]) })
      }
      node.value = node.type === 'PLAIN' ? retype(value, isWholeExpression(raw)) : value
      if (node.value === null) emptied.set(formatPath(docPath(path, node)), raw)
    }
  })

  const data: unknown = doc.toJS() ?? {}
  if (!isMapping(data)) {
    throw new ConfigError(file, [...interpolated, { path: [], message: 'expected a mapping with listen, pools and routes' }])
  }
  const oneListener = expandShorthands(data)
  const unlist = (issues: ConfigIssue[]): ConfigIssue[] => {
    if (oneListener) for (const i of issues) if (i.path[0] === 'listen' && i.path[1] === 0) i.path.splice(1, 1)
    return issues
  }
  const emptiedBy = (at: Path): string | undefined => emptied.get(formatPath(unlist([{ path: [...at], message: '' }])[0].path))
  const empty = unlist(takeEmptyValues(data, ConfigSchema as unknown as SchemaNode, emptiedBy))
  const validateSchema = schemaValidator()
  const schema = validateSchema(data) ? [] : schemaIssues(validateSchema.errors ?? [], doc, locate, oneListener)
  const durations = unlist(convertDurations(data, ConfigSchema as unknown as SchemaNode))
  // Certificate files are relative to the config file, wherever the process runs.
  for (const l of Array.isArray(data.listen) ? data.listen : []) {
    const certs = isMapping(l) && isMapping(l.tls) && Array.isArray(l.tls.certificates) ? l.tls.certificates : []
    for (const c of certs) {
      if (!isMapping(c)) continue
      if (typeof c.cert === 'string') c.cert = resolvePath(dirname(file), c.cert)
      if (typeof c.key === 'string') c.key = resolvePath(dirname(file), c.key)
    }
  }
  // JWKS files too (security/jwt-check.ts reads them on every load and reload).
  for (const rules of [data.access, ...list(data.routes).map((r) => (isMapping(r) ? r.access : undefined))]) {
    for (const rule of list(rules)) {
      if (isMapping(rule) && isMapping(rule.jwt) && typeof rule.jwt.jwks_file === 'string') rule.jwt.jwks_file = resolvePath(dirname(file), rule.jwt.jwks_file)
    }
  }
  // So is the access log file (an absolute path is kept as it is).
  const accessLog = isMapping(data.logging) && isMapping(data.logging.access_log) ? data.logging.access_log : undefined
  if (accessLog !== undefined && typeof accessLog.path === 'string' && accessLog.path !== '') accessLog.path = resolvePath(dirname(file), accessLog.path)
  // Forward proxy block lists too.
  resolveForwardFiles(data, dirname(file))
  // An empty value has no text of its own: point at its key.
  for (const i of empty) Object.assign(i, locate(keyAt(doc, i.path)?.range?.[0] ?? nodeAt(doc, i.path)?.range?.[0]))
  const references = unlist(checkReferences(data))
  const found = mergeIssues([interpolated, empty, schema, durations, references])
  for (const i of found) if (i.line === undefined) Object.assign(i, locate(nodeAt(doc, i.path)?.range?.[0]))
  if (found.length > 0) throw new ConfigError(file, sortIssues(found))
  return deepFreeze(data as Config)
}

/** The issues of several checks, less those about a path an earlier check already named. */
function mergeIssues(groups: ConfigIssue[][]): ConfigIssue[] {
  const out: ConfigIssue[] = []
  const named = new Set<string>()
  for (const group of groups) {
    const mine: string[] = []
    for (const i of group) {
      const p = formatPath(i.path)
      if (named.has(p)) continue
      out.push(i)
      mine.push(p)
    }
    for (const p of mine) named.add(p)
  }
  return out
}

/** By line, then column; issues without a place (the file as a whole) first. Stable. */
function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  return issues.map((i, n) => ({ i, n })).sort((a, b) => ((a.i.line ?? 0) - (b.i.line ?? 0)) || ((a.i.col ?? 0) - (b.i.col ?? 0)) || (a.n - b.n)).map(({ i }) => i)
}

/**
 * A key written with nothing after it (`workers:`) is YAML null, which type coercion would turn
 * into 0 or "" and so into a silent default (one worker per CPU, a random port). Each one is an
 * issue, and is removed so that the schema does not report it again; null list items are issues
 * too. Unknown keys are left to the schema's "unknown key".
 */
function takeEmptyValues(data: unknown, schema: SchemaNode | undefined, emptiedBy: (at: Path) => string | undefined, path: Path = []): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const because = (at: Path): string => {
    const raw = emptiedBy(at)
    return raw === undefined ? '' : ` (${raw} is empty)`
  }
  if (Array.isArray(data)) {
    data.forEach((v, i) => {
      const s = childSchema(schema, i)
      if (v === null && s !== undefined) issues.push({ path: [...path, i], message: `expected a value${because([...path, i])}` })
      else issues.push(...takeEmptyValues(v, s, emptiedBy, [...path, i]))
    })
  } else if (isMapping(data)) {
    for (const [k, v] of Object.entries(data)) {
      const s = childSchema(schema, k)
      if (s === undefined) continue
      if (v !== null) {
        issues.push(...takeEmptyValues(v, s, emptiedBy, [...path, k]))
        continue
      }
      const at = [...path, k]
      issues.push({ path: at, message: `expected a value${because(at)}${useDefault(at, s, isRequired(schema, k, s))}` })
      delete data[k]
    }
  }
  return issues
}

function useDefault(path: Path, s: SchemaNode, required: boolean): string {
  if (required) return ''
  if (s.default === undefined) return ' (or remove the key)'
  if (path.length === 1 && path[0] === 'listen') return '; remove the key to use the default listener (0.0.0.0:8080)'
  if (isMapping(s.default) && isMapping(s.properties)) return '; remove the key to use the defaults'
  return `; remove the key to use the default ${showDefault(s.default)}`
}

/** A default as it would be written in the file: 8080, info, [h2, http/1.1], {}. */
function showDefault(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(showDefault).join(', ')}]`
  if (isMapping(v)) return `{${Object.entries(v).map(([k, x]) => `${k}: ${showDefault(x)}`).join(', ')}}`
  if (typeof v === 'string') return v === '' || /[\s:#,[\]{}]/.test(v) ? JSON.stringify(v) : v
  return String(v)
}

/** Path of keys from the document root to a node visited by `yaml.visit`. */
function docPath(ancestors: readonly unknown[], _node: unknown): (string | number)[] {
  const out: (string | number)[] = []
  let child: unknown = _node
  for (let i = ancestors.length - 1; i >= 0; i--) {
    const a = ancestors[i] as { items?: unknown[]; key?: unknown; value?: unknown }
    if (Array.isArray(a.items)) {
      const idx = a.items.indexOf(child)
      if (idx >= 0 && !('key' in (a.items[idx] as object))) out.unshift(idx)
    } else if (a.value === child && isScalar(a.key)) {
      out.unshift(String(a.key.value))
    }
    child = a
  }
  return out
}

/** The key node of the mapping entry at `path`, if the last step is a key. */
function keyAt(doc: Document, path: (string | number)[]): YamlNode | undefined {
  const last = path[path.length - 1]
  if (typeof last !== 'string') return undefined
  const parent = doc.getIn(path.slice(0, -1), true)
  if (!isMap(parent)) return undefined
  const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === last)
  return isScalar(pair?.key) ? pair.key : undefined
}

function nodeAt(doc: Document, path: (string | number)[]): YamlNode | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as YamlNode | undefined
    if (node != null && typeof node === 'object' && 'range' in node) return node
  }
  return undefined
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing'
  // doc.getIn gives a collection as its YAML node.
  if (isSeq(value)) return 'a list'
  if (isMap(value)) return 'a mapping'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  return JSON.stringify(value)
}

/**
 * Shorthands the schema reads in their long form: `listen: {host, port}` is a list of one
 * listener; a route's `compress: true` is `{}` and `websocket: false` is `{enabled: false}`.
 * True when `listen` was a single mapping (its error paths then name no index).
 */
function expandShorthands(data: Record<string, unknown>): boolean {
  let oneListener = false
  if (data.listen !== null && typeof data.listen === 'object' && !Array.isArray(data.listen)) {
    data.listen = [data.listen]
    oneListener = true
  }
  // An L4 listener's own block gets its defaults even when it is not written.
  for (const l of list(data.listen)) {
    if (!isMapping(l)) continue
    if (l.protocol === 'tcp' && l.tcp === undefined) l.tcp = {}
    if (l.protocol === 'udp' && l.udp === undefined) l.udp = {}
  }
  // An L4 pool's health check is a tcp connect or a udp exchange unless it says otherwise.
  for (const pool of Object.values(isMapping(data.pools) ? data.pools : {})) {
    if (!isMapping(pool) || !isMapping(pool.health_check) || pool.health_check.type !== undefined) continue
    const proto = poolProtocol(pool)
    if (proto === 'tcp' || proto === 'udp') pool.health_check.type = proto
  }
  // `logging.access_log: true` (the setting's first form, a boolean) is the log on with the defaults.
  if (isMapping(data.logging) && typeof data.logging.access_log === 'boolean') data.logging.access_log = { enabled: data.logging.access_log }
  if (Array.isArray(data.routes)) {
    for (const r of data.routes as unknown[]) {
      if (r === null || typeof r !== 'object') continue
      const route = r as Record<string, unknown>
      if (typeof route.compress === 'boolean') route.compress = { enabled: route.compress }
      if (typeof route.websocket === 'boolean') route.websocket = { enabled: route.websocket }
      if (typeof route.access_log === 'boolean') route.access_log = { enabled: route.access_log }
    }
  }
  return oneListener
}

function schemaIssues(errors: ErrorObject[], doc: Document, locate: (o: number | undefined) => { line?: number; col?: number }, oneListener = false): ConfigIssue[] {
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath))
  const seen = new Set<string>()
  const out: ConfigIssue[] = []
  for (const e of errors) {
    if (anyOfPaths.has(e.instancePath) && e.keyword !== 'anyOf') continue
    const path = e.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~')).map((s) => (/^\d+$/.test(s) ? Number(s) : s))
    if (oneListener && path[0] === 'listen' && path[1] === 0) path.splice(1, 1)
    const actual = doc.getIn(path)
    let message: string
    switch (e.keyword) {
      case 'required': path.push(String(e.params.missingProperty)); message = 'is required'; break
      case 'additionalProperties':
        path.push(String(e.params.additionalProperty))
        // In a map of names (pools), the key is a name that misses the pattern, not a misspelt key.
        message = isMapping((e.parentSchema as SchemaNode | undefined)?.patternProperties)
          ? `expected a name of letters, digits, _ . - (at most 63), got ${JSON.stringify(e.params.additionalProperty)}`
          : 'unknown key (check the spelling; see the configuration reference in README.md)'
        break
      case 'type': message = `expected ${e.params.type === 'integer' ? 'an integer' : e.params.type === 'object' ? 'a mapping' : e.params.type === 'array' ? 'a list' : `a ${String(e.params.type)}`}, got ${describe(actual)}`; break
      case 'enum': message = `expected one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, got ${describe(actual)}`; break
      case 'minimum': message = `expected a number >= ${String(e.params.limit)}, got ${describe(actual)}`; break
      case 'maximum': message = `expected a number <= ${String(e.params.limit)}, got ${describe(actual)}`; break
      case 'minItems': message = `expected at least ${String(e.params.limit)} item${e.params.limit === 1 ? '' : 's'}`; break
      case 'minLength': message = 'expected a non-empty string'; break
      case 'pattern': message = `expected ${(e.parentSchema as { description?: string } | undefined)?.description ?? `a string matching ${String(e.params.pattern)}`}, got ${describe(actual)}`; break
      case 'anyOf': message = anyOfMessage(e.parentSchema as SchemaNode | undefined, actual); break
      default: message = e.message ?? 'invalid value'
    }
    const key = formatPath(path) + message
    if (seen.has(key)) continue
    seen.add(key)
    // An unknown key is pointed at by its key, the rest by their value.
    const node = e.keyword === 'additionalProperties' ? keyAt(doc, path) ?? nodeAt(doc, path) : nodeAt(doc, path)
    out.push({ path, message, ...locate(node?.range?.[0]) })
  }
  return out
}

function anyOfMessage(s: SchemaNode | undefined, actual: unknown): string {
  const description = typeof s?.description === 'string' ? s.description : 'a different value'
  // A number for a duration key: say what is wrong with the number, not that it is not a string.
  const n = typeof actual === 'string' && /^-?[0-9]+(\.[0-9]+)?$/.test(actual) ? Number(actual) : actual
  if (s !== undefined && s.description === DURATION_DESCRIPTION && typeof n === 'number') {
    if (!Number.isInteger(n)) return `expected whole milliseconds or a duration such as "1.5s", got ${describe(actual)}`
    const min = durationMinimum(s)
    if (n < min) return `expected a number >= ${min}, got ${describe(actual)}`
    return `expected a number <= ${String(((s.anyOf as SchemaNode[])[0] as { maximum?: number }).maximum)}, got ${describe(actual)}`
  }
  return `expected ${description}, got ${describe(actual)}`
}

/** zstd content coding: node:zlib has it from Node 22.15 / 23.8. */
const HAVE_ZSTD = typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress === 'function'

const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/

function validHostPattern(h: string): boolean {
  const host = h.startsWith('*.') ? h.slice(2) : h
  if (isIP(host) !== 0) return !h.startsWith('*.')
  return host.length <= 253 && host.split('.').every((l) => HOST_LABEL.test(l))
}

const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : [])
const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)

export type PoolProtocol = 'http' | 'tcp' | 'udp'

/** What a member URL's scheme makes of its pool: http(s):// -> http, tcp:// -> tcp, udp:// -> udp. */
export function memberProtocol(url: string): PoolProtocol | undefined {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase()
  if (scheme === 'http' || scheme === 'https') return 'http'
  if (scheme === 'tcp' || scheme === 'udp') return scheme
  return undefined
}

/** A pool's protocol, read from its first member with a known scheme (http when there is none). */
export function poolProtocol(pool: unknown): PoolProtocol {
  for (const m of list(isMapping(pool) ? pool.members : undefined)) {
    const url = isMapping(m) ? text(m.url) : undefined
    const p = url === undefined ? undefined : memberProtocol(url)
    if (p !== undefined) return p
  }
  return 'http'
}

/**
 * HTTP-only pool settings an L4 pool must leave alone (they would silently do nothing), with
 * their defaults (the schema has filled them in by the time references are checked).
 */
const HTTP_POOL_DEFAULTS: Record<string, unknown> = { host_header: 'preserve', http2: false, max_requests: 0 }
const HTTP_ONLY_POOL_KEYS = Object.keys(HTTP_POOL_DEFAULTS)

/** Checks of the L4 side: member URLs of tcp/udp pools, listeners that point at them. */
function checkL4(c: Record<string, unknown>, pools: Record<string, unknown> | undefined, issues: ConfigIssue[]): void {
  const protocols = new Map<string, PoolProtocol>()
  for (const [name, pool] of Object.entries(pools ?? {})) {
    if (!isMapping(pool)) continue
    const proto = poolProtocol(pool)
    protocols.set(name, proto)
    if (proto === 'http') continue
    list(pool.members).forEach((m, i) => {
      const url = isMapping(m) ? text(m.url) : undefined
      if (url === undefined || url === '') return
      const path = ['pools', name, 'members', i, 'url']
      if (memberProtocol(url) !== proto) {
        issues.push({ path, message: `expected a ${proto}:// URL like the pool's first member (one pool, one protocol), got ${JSON.stringify(url)}` })
        return
      }
      let u: URL | undefined
      try { u = new URL(url) } catch { /* reported below */ }
      if (u === undefined || u.hostname === '' || u.port === '') {
        issues.push({ path, message: `expected ${proto}://host:port such as ${proto}://127.0.0.1:12001, got ${JSON.stringify(url)}` })
      } else if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '' || u.username !== '') {
        issues.push({ path, message: 'expected scheme, host and port only (no path, query or credentials)' })
      }
    })
    for (const key of HTTP_ONLY_POOL_KEYS) {
      if (pool[key] !== undefined && JSON.stringify(pool[key]) !== JSON.stringify(HTTP_POOL_DEFAULTS[key])) {
        issues.push({ path: ['pools', name, key], message: `only used by http pools (this is a ${proto} pool)` })
      }
    }
    if (isMapping(pool.hash_on) && (pool.hash_on.header !== undefined || pool.hash_on.cookie !== undefined)) {
      issues.push({ path: ['pools', name, 'hash_on'], message: `a ${proto} pool hashes on the client address only (hash_on: {source_ip: true})` })
    }
    const hc = isMapping(pool.health_check) ? pool.health_check : undefined
    if (hc !== undefined && hc.type === 'http') issues.push({ path: ['pools', name, 'health_check', 'type'], message: `expected ${proto === 'tcp' ? 'tcp' : 'udp'} for a ${proto} pool (http checks need http:// members)` })
    if (hc !== undefined && proto === 'tcp' && hc.type === 'udp') issues.push({ path: ['pools', name, 'health_check', 'type'], message: 'expected tcp for a tcp pool' })
    if (hc !== undefined && proto === 'udp' && hc.type === 'tcp') issues.push({ path: ['pools', name, 'health_check', 'type'], message: 'expected udp for a udp pool (a udp member accepts no connection)' })
  }
  for (const [name, pool] of Object.entries(pools ?? {})) {
    if (protocols.get(name) === 'http' && isMapping(pool) && isMapping(pool.health_check) && pool.health_check.type === 'udp') {
      issues.push({ path: ['pools', name, 'health_check', 'type'], message: 'expected http or tcp for an http pool (udp checks need udp:// members)' })
    }
  }
  const l4Pool = (name: string): string => `${name} is a ${protocols.get(name) ?? ''} pool (its members are ${protocols.get(name) ?? ''}:// URLs)`
  list(c.routes).forEach((r, i) => {
    if (!isMapping(r)) return
    const refs: [unknown, Path][] = [[r.pool, ['routes', i, 'pool']]]
    if (isMapping(r.split)) list(r.split.variants).forEach((v, j) => { if (isMapping(v)) refs.push([v.pool, ['routes', i, 'split', 'variants', j, 'pool']]) })
    for (const [ref, path] of refs) {
      const p = typeof ref === 'string' ? protocols.get(ref) : undefined
      if (p !== undefined && p !== 'http') issues.push({ path, message: `routes need an http pool; ${l4Pool(ref as string)}: point a protocol: ${p} listener at it instead` })
    }
  })
  let http = 0
  list(c.listen).forEach((l, i) => {
    if (!isMapping(l)) return
    const proto = l.protocol === undefined ? 'http' : l.protocol
    if (proto === 'http') {
      http++
      for (const key of ['pool', 'tcp', 'udp']) if (l[key] !== undefined) issues.push({ path: ['listen', i, key], message: `only used by protocol: tcp or udp listeners (this one is http: it follows routes)` })
      return
    }
    if (proto !== 'tcp' && proto !== 'udp') return
    for (const key of ['tls', 'redirect_https']) if (l[key] !== undefined) issues.push({ path: ['listen', i, key], message: `only used by http listeners (this one is ${proto})` })
    if (l.h2c === true) issues.push({ path: ['listen', i, 'h2c'], message: `only used by http listeners (this one is ${proto})` })
    const other = proto === 'tcp' ? 'udp' : 'tcp'
    if (l[other] !== undefined) issues.push({ path: ['listen', i, other], message: `only used by protocol: ${other} listeners (this one is ${proto})` })
    const pool = text(l.pool)
    if (pool === undefined) {
      issues.push({ path: ['listen', i, 'pool'], message: `is required for a ${proto} listener (the pool it balances over)` })
      return
    }
    if (pools === undefined) return
    if (!Object.hasOwn(pools, pool)) {
      const names = Object.keys(pools)
      issues.push({ path: ['listen', i, 'pool'], message: `unknown pool ${JSON.stringify(pool)} (${names.length > 0 ? `known pools: ${names.join(', ')}` : 'no pools are defined'})` })
      return
    }
    const p = protocols.get(pool)
    if (p !== proto) issues.push({ path: ['listen', i, 'pool'], message: `a ${proto} listener needs a pool of ${proto}:// members; ${pool} is ${p === 'tcp' || p === 'udp' ? `a ${p}` : 'an http'} pool` })
  })
  if (http === 0 && list(c.listen).length > 0) {
    issues.push({ path: ['listen'], message: 'expected at least one http listener (protocol: http, the default) beside the tcp and udp ones' })
  }
}

/**
 * Checks the schema cannot express: references between sections, uniqueness, URL shapes. Run
 * whether or not the schema passed, so it reads the data defensively: a part of the wrong type
 * is skipped (the schema reports it), never guessed at.
 */
function checkReferences(c: Record<string, unknown>): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const pools = isMapping(c.pools) ? c.pools : undefined
  const poolNames = Object.keys(pools ?? {})
  const known = poolNames.length > 0 ? `known pools: ${poolNames.join(', ')}` : 'no pools are defined'
  const unknownPool = (name: unknown, path: Path): void => {
    // Without a pools mapping every name would be unknown: the schema's error says enough.
    if (pools !== undefined && typeof name === 'string' && name !== '' && !Object.hasOwn(pools, name)) {
      issues.push({ path, message: `unknown pool ${JSON.stringify(name)} (${known})` })
    }
  }
  checkL4(c, pools, issues)
  for (const [name, pool] of Object.entries(pools ?? {})) {
    if (!isMapping(pool)) continue
    if (poolProtocol(pool) !== 'http') {
      if (isMapping(pool.hash_on) && typeof pool.balancer === 'string' && pool.balancer !== 'hash') {
        issues.push({ path: ['pools', name, 'hash_on'], message: `only used with balancer: hash (this pool uses ${pool.balancer})` })
      }
      continue
    }
    list(pool.members).forEach((m, i) => {
      const url = isMapping(m) ? text(m.url) : undefined
      if (url === undefined || url === '') return
      let u: URL | undefined
      try { u = new URL(url) } catch { /* reported below */ }
      if (u === undefined || (u.protocol !== 'http:' && u.protocol !== 'https:') || u.hostname === '') {
        const l4 = memberProtocol(url)
        issues.push({ path: ['pools', name, 'members', i, 'url'], message: l4 === undefined
          ? `expected an http:// or https:// URL such as http://127.0.0.1:9001 (tcp:// or udp:// for an L4 pool), got ${JSON.stringify(url)}`
          : `expected an http:// or https:// URL like the pool's first member (one pool, one protocol), got ${JSON.stringify(url)}` })
      } else if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '' || u.username !== '') {
        issues.push({ path: ['pools', name, 'members', i, 'url'], message: 'expected scheme, host and port only (no path, query or credentials)' })
      }
    })
    if (isMapping(pool.hash_on)) {
      if (typeof pool.balancer === 'string' && pool.balancer !== 'hash') {
        issues.push({ path: ['pools', name, 'hash_on'], message: `only used with balancer: hash (this pool uses ${pool.balancer})` })
      }
      const h = pool.hash_on
      const set = [h.header, h.cookie, h.source_ip].filter((v) => v !== undefined && v !== false).length
      if (set !== 1) issues.push({ path: ['pools', name, 'hash_on'], message: 'expected exactly one of header, cookie or source_ip: true' })
    }
  }
  const routeNames = new Map<string, number>()
  const splitConfigs = new Map<string, { at: number; json: string }>()
  list(c.routes).forEach((r, i) => {
    if (!isMapping(r)) return
    const name = text(r.name)
    if (name !== undefined) {
      const prev = routeNames.get(name)
      if (prev !== undefined) issues.push({ path: ['routes', i, 'name'], message: `duplicate route name ${JSON.stringify(name)} (also routes[${prev}])` })
      routeNames.set(name, i)
    }
    const host = isMapping(r.match) ? text(r.match.host) : undefined
    if (host !== undefined && host !== '' && !validHostPattern(host.toLowerCase())) {
      issues.push({ path: ['routes', i, 'match', 'host'], message: `expected a host name (example.com) or a wildcard (*.example.com), got ${JSON.stringify(host)}` })
    }
    const compress = r.compress
    if (isMapping(compress) && compress.enabled !== false && !HAVE_ZSTD && Array.isArray(compress.encodings) && compress.encodings.length > 0 && compress.encodings.every((e) => e === 'zstd')) {
      issues.push({ path: ['routes', i, 'compress', 'encodings'], message: `zstd needs Node >= 22.15 (this is ${process.version}); add br or gzip` })
    }
    if ((r.pool === undefined) === (r.split === undefined)) {
      issues.push({ path: ['routes', i], message: 'expected exactly one of pool or split' })
    }
    unknownPool(r.pool, ['routes', i, 'pool'])
    if (isMapping(r.split)) {
      const names = new Set<string>()
      let total = 0
      let weighed = true
      list(r.split.variants).forEach((v, j) => {
        if (!isMapping(v)) { weighed = false; return }
        const vname = text(v.name)
        if (vname !== undefined) {
          if (names.has(vname)) issues.push({ path: ['routes', i, 'split', 'variants', j, 'name'], message: `duplicate variant name ${JSON.stringify(vname)}` })
          names.add(vname)
        }
        // A weight the schema rejects (negative, not a number) makes the sum meaningless.
        if (typeof v.weight === 'number' && v.weight >= 0) total += v.weight
        else weighed = false
        unknownPool(v.pool, ['routes', i, 'split', 'variants', j, 'pool'])
      })
      if (weighed && Array.isArray(r.split.variants) && r.split.variants.length > 0 && total <= 0) {
        issues.push({ path: ['routes', i, 'split', 'variants'], message: 'expected the variant weights to add up to more than 0' })
      }
      issues.push(...splitIssues(r.split, names, ['routes', i, 'split']))
      const sname = text(r.split.name)
      if (sname !== undefined) {
        // Routes may share a split (one experiment over two paths), then with one config: its state is one.
        const prev = splitConfigs.get(sname)
        if (prev !== undefined && prev.json !== JSON.stringify(r.split)) issues.push({ path: ['routes', i, 'split', 'name'], message: `split ${JSON.stringify(sname)} is also defined by routes[${prev.at}] with other settings; give this one another name or the same settings` })
        if (prev === undefined) splitConfigs.set(sname, { at: i, json: JSON.stringify(r.split) })
      }
    }
  })
  const bound = new Map<string, number>()
  const listenerNames = new Set<string>()
  list(c.listen).forEach((l, i) => {
    if (!isMapping(l)) return
    if (typeof l.host === 'string' && typeof l.port === 'number') {
      const where = `${l.host}:${l.port}`
      const prev = bound.get(where)
      if (prev !== undefined && l.port !== 0) issues.push({ path: ['listen', i, 'port'], message: `${where} is already used by listen[${prev}]` })
      bound.set(where, i)
    }
    const lname = text(l.name)
    if (lname !== undefined) {
      if (listenerNames.has(lname)) issues.push({ path: ['listen', i, 'name'], message: `duplicate listener name ${JSON.stringify(lname)}` })
      listenerNames.add(lname)
    }
    if (isMapping(l.tls)) {
      if (list(l.tls.certificates).length === 0 && l.tls.self_signed !== true) issues.push({ path: ['listen', i, 'tls'], message: 'expected certificates (cert and key files) or self_signed: true' })
      if (l.h2c === true) issues.push({ path: ['listen', i, 'h2c'], message: 'h2c is for plain listeners (a TLS listener offers h2 by ALPN: tls.alpn)' })
      if (l.redirect_https !== undefined) issues.push({ path: ['listen', i, 'redirect_https'], message: 'redirect_https is for plain listeners (this one already serves https)' })
    }
  })
  const sidecarNames = new Set<string>()
  list(c.sidecars).forEach((s, i) => {
    const sname = isMapping(s) ? text(s.name) : undefined
    if (sname === undefined) return
    if (sidecarNames.has(sname)) issues.push({ path: ['sidecars', i, 'name'], message: `duplicate sidecar name ${JSON.stringify(sname)}` })
    sidecarNames.add(sname)
  })
  checkAccessRules(c.access, ['access'], issues)
  list(c.routes).forEach((r, i) => { if (isMapping(r)) checkAccessRules(r.access, ['routes', i, 'access'], issues) })
  list(c.trusted_proxies).forEach((cidr, i) => {
    if (typeof cidr === 'string' && parseCidr(cidr) === undefined) issues.push({ path: ['trusted_proxies', i], message: `expected an IP address or CIDR such as 10.0.0.0/8, got ${JSON.stringify(cidr)}` })
  })
  issues.push(...checkForward(c))
  return issues
}

/** Access rules (security/firewall.ts): one action each, unique names, CIDRs, patterns, JWT key source. */
function checkAccessRules(rules: unknown, at: Path, issues: ConfigIssue[]): void {
  const names = new Map<string, number>()
  list(rules).forEach((rule, i) => {
    if (!isMapping(rule)) return
    const path = [...at, i]
    const name = text(rule.name)
    if (name !== undefined) {
      const prev = names.get(name)
      if (prev !== undefined) issues.push({ path: [...path, 'name'], message: `duplicate rule name ${JSON.stringify(name)} (also ${formatPath([...at, prev])})` })
      names.set(name, i)
    }
    const actions = ['action', 'basic', 'jwt', 'rate_limit'].filter((k) => rule[k] !== undefined)
    if (actions.length !== 1) issues.push({ path, message: `expected exactly one of action (allow or deny), basic, jwt or rate_limit${actions.length > 1 ? ` (found ${actions.join(', ')})` : ''}` })
    for (const key of ['when', 'unless']) {
      const cond = rule[key]
      if (!isMapping(cond)) continue
      list(cond.cidrs).forEach((cidr, j) => {
        if (typeof cidr === 'string' && parseCidr(cidr) === undefined) issues.push({ path: [...path, key, 'cidrs', j], message: `expected an IP address or CIDR such as 10.0.0.0/8, got ${JSON.stringify(cidr)}` })
      })
      list(cond.paths).forEach((p, j) => {
        if (typeof p !== 'string') return
        if (p.startsWith('~')) {
          const bad = regexError(p.slice(1))
          if (bad !== undefined) issues.push({ path: [...path, key, 'paths', j], message: `expected a regular expression after "~": ${bad}` })
        } else if (!p.startsWith('/')) {
          issues.push({ path: [...path, key, 'paths', j], message: `expected a path prefix starting with "/" or a regular expression after "~", got ${JSON.stringify(p)}` })
        }
      })
      if (isMapping(cond.headers)) {
        for (const [field, hc] of Object.entries(cond.headers)) {
          if (!isMapping(hc)) continue
          const set = ['present', 'equals', 'matches'].filter((k) => hc[k] !== undefined)
          if (set.length !== 1) issues.push({ path: [...path, key, 'headers', field], message: 'expected exactly one of present, equals or matches' })
          if (typeof hc.matches === 'string') {
            const bad = regexError(hc.matches)
            if (bad !== undefined) issues.push({ path: [...path, key, 'headers', field, 'matches'], message: `expected a regular expression: ${bad}` })
          }
        }
      }
    }
    const jwt = rule.jwt
    if (isMapping(jwt)) {
      const hasSecret = jwt.secret !== undefined
      const hasJwks = jwt.jwks_file !== undefined
      if (hasSecret === hasJwks) issues.push({ path: [...path, 'jwt'], message: 'expected exactly one of secret (HS256) or jwks_file (RS256, ES256)' })
      for (const alg of list(jwt.algorithms)) {
        if (typeof alg !== 'string') continue
        if (hasSecret && alg !== 'HS256') issues.push({ path: [...path, 'jwt', 'algorithms'], message: `${alg} needs jwks_file (a secret verifies HS256 only)` })
        if (hasJwks && alg === 'HS256') issues.push({ path: [...path, 'jwt', 'algorithms'], message: 'HS256 needs secret (a JWKS file holds public keys)' })
      }
    }
  })
}

function regexError(source: string): string | undefined {
  try {
    new RegExp(source)
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}

/** A split's control, holdout, ramp and guardrail against its variant names. */
function splitIssues(split: Record<string, unknown>, names: ReadonlySet<string>, at: Path): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const known = [...names].map((n) => JSON.stringify(n)).join(', ')
  const control = text(split.control)
  if (control !== undefined && !names.has(control)) issues.push({ path: [...at, 'control'], message: `expected one of the variant names (${known}), got ${JSON.stringify(control)}` })
  if (typeof split.holdout === 'number' && split.holdout > 0 && names.has(HOLDOUT)) {
    issues.push({ path: [...at, 'holdout'], message: `a variant is named "${HOLDOUT}", the label held-out clients count under; rename it or set holdout: 0` })
  }
  list(split.ramp).forEach((stage, k) => {
    if (!isMapping(stage)) return
    const when = text(stage.at)
    if (when !== undefined && parseRampTime(when) === undefined) issues.push({ path: [...at, 'ramp', k, 'at'], message: `expected an ISO time such as "2026-05-01T09:00:00Z" or a duration after start such as "30m", got ${JSON.stringify(when)}` })
    if (!isMapping(stage.weights)) return
    let sum = 0
    for (const [name, w] of Object.entries(stage.weights)) {
      if (!names.has(name)) issues.push({ path: [...at, 'ramp', k, 'weights', name], message: `expected one of the variant names (${known})` })
      if (typeof w === 'number' && w > 0) sum += w
    }
    if (sum <= 0) issues.push({ path: [...at, 'ramp', k, 'weights'], message: 'expected the stage\'s weights to add up to more than 0' })
  })
  return issues
}

export function parseCidr(s: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [addr, bits] = s.split('/')
  const v = isIP(addr ?? '')
  if (v === 0) return undefined
  const max = v === 4 ? 32 : 128
  const prefix = bits === undefined ? max : Number(bits)
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (bits !== undefined && !/^\d+$/.test(bits))) return undefined
  return { address: addr as string, prefix, family: v === 4 ? 'ipv4' : 'ipv6' }
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}
