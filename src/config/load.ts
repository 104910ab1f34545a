/**
 * Load upstreams.yaml: parse, interpolate, validate against the schema, check references,
 * report every problem together with file:line:col and the path inside the file, then freeze
 * (DESIGN.md habit 3).
 */
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { dirname, resolve as resolvePath } from 'node:path'
import * as zlib from 'node:zlib'
import { Ajv, type ErrorObject } from 'ajv'
import { LineCounter, parseDocument, isScalar, visit, type Document, type Node as YamlNode } from 'yaml'
import { ConfigSchema, type Config } from './schema.js'
import { interpolate, isWholeExpression, retype } from './interpolate.js'

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
const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, coerceTypes: true })
const validateSchema = ajv.compile(ConfigSchema)

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

  const issues: ConfigIssue[] = []
  visit(doc, {
    Scalar(key, node, path) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('$')) return
      const raw = node.value
      const { value, missing } = interpolate(raw, env)
      for (const name of missing) {
        issues.push({ path: docPath(path, node), message: `environment variable ${name} is not set (use \${${name}:-default} to give a default)`, ...locate(node.range?.[0]) })
      }
      node.value = node.type === 'PLAIN' ? retype(value, isWholeExpression(raw)) : value
    }
  })
  if (issues.length > 0) throw new ConfigError(file, issues)

  const data: unknown = doc.toJS() ?? {}
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(file, [{ path: [], message: 'expected a mapping with listen, pools and routes' }])
  }
  const oneListener = expandShorthands(data as Record<string, unknown>)
  if (!validateSchema(data)) {
    const found = schemaIssues(validateSchema.errors ?? [], doc, locate, oneListener)
    throw new ConfigError(file, found)
  }
  const config = data as Config
  // Certificate files are relative to the config file, wherever the process runs.
  for (const l of config.listen) {
    for (const c of l.tls?.certificates ?? []) {
      c.cert = resolvePath(dirname(file), c.cert)
      c.key = resolvePath(dirname(file), c.key)
    }
  }
  const semantic = checkReferences(config)
  if (oneListener) for (const i of semantic) if (i.path[0] === 'listen' && i.path[1] === 0) i.path.splice(1, 1)
  if (semantic.length > 0) {
    for (const i of semantic) Object.assign(i, locate(nodeAt(doc, i.path)?.range?.[0]))
    throw new ConfigError(file, semantic)
  }
  return deepFreeze(config)
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

function nodeAt(doc: Document, path: (string | number)[]): YamlNode | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as YamlNode | undefined
    if (node != null && typeof node === 'object' && 'range' in node) return node
  }
  return undefined
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing'
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
  if (Array.isArray(data.routes)) {
    for (const r of data.routes as unknown[]) {
      if (r === null || typeof r !== 'object') continue
      const route = r as Record<string, unknown>
      if (typeof route.compress === 'boolean') route.compress = { enabled: route.compress }
      if (typeof route.websocket === 'boolean') route.websocket = { enabled: route.websocket }
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
      case 'additionalProperties': path.push(String(e.params.additionalProperty)); message = 'unknown key (check the spelling; see the configuration reference in README.md)'; break
      case 'type': message = `expected ${e.params.type === 'integer' ? 'an integer' : e.params.type === 'object' ? 'a mapping' : e.params.type === 'array' ? 'a list' : `a ${String(e.params.type)}`}, got ${describe(actual)}`; break
      case 'enum': message = `expected one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, got ${describe(actual)}`; break
      case 'minimum': message = `expected a number >= ${String(e.params.limit)}, got ${describe(actual)}`; break
      case 'maximum': message = `expected a number <= ${String(e.params.limit)}, got ${describe(actual)}`; break
      case 'minItems': message = `expected at least ${String(e.params.limit)} item${e.params.limit === 1 ? '' : 's'}`; break
      case 'minLength': message = 'expected a non-empty string'; break
      case 'pattern': message = `expected ${(e.parentSchema as { description?: string } | undefined)?.description ?? `a string matching ${String(e.params.pattern)}`}, got ${describe(actual)}`; break
      case 'anyOf': message = `expected ${(e.parentSchema as { description?: string } | undefined)?.description ?? 'a different value'}, got ${describe(actual)}`; break
      default: message = e.message ?? 'invalid value'
    }
    const key = formatPath(path) + message
    if (seen.has(key)) continue
    seen.add(key)
    out.push({ path, message, ...locate(nodeAt(doc, path)?.range?.[0]) })
  }
  return out
}

/** zstd content coding: node:zlib has it from Node 22.15 / 23.8. */
const HAVE_ZSTD = typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress === 'function'

const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/

function validHostPattern(h: string): boolean {
  const host = h.startsWith('*.') ? h.slice(2) : h
  if (isIP(host) !== 0) return !h.startsWith('*.')
  return host.length <= 253 && host.split('.').every((l) => HOST_LABEL.test(l))
}

/** Checks the schema cannot express: references between sections, uniqueness, URL shapes. */
function checkReferences(c: Config): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const poolNames = Object.keys(c.pools)
  const known = poolNames.length > 0 ? `known pools: ${poolNames.join(', ')}` : 'no pools are defined'
  for (const [name, pool] of Object.entries(c.pools)) {
    pool.members.forEach((m, i) => {
      let u: URL | undefined
      try { u = new URL(m.url) } catch { /* reported below */ }
      if (u === undefined || (u.protocol !== 'http:' && u.protocol !== 'https:') || u.hostname === '') {
        issues.push({ path: ['pools', name, 'members', i, 'url'], message: `expected an http:// or https:// URL such as http://127.0.0.1:9001, got ${JSON.stringify(m.url)}` })
      } else if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '' || u.username !== '') {
        issues.push({ path: ['pools', name, 'members', i, 'url'], message: 'expected scheme, host and port only (no path, query or credentials)' })
      }
    })
    if (pool.hash_on !== undefined && pool.balancer !== 'hash') {
      issues.push({ path: ['pools', name, 'hash_on'], message: `only used with balancer: hash (this pool uses ${pool.balancer})` })
    }
    if (pool.hash_on !== undefined) {
      const set = [pool.hash_on.header, pool.hash_on.cookie, pool.hash_on.source_ip].filter((v) => v !== undefined && v !== false).length
      if (set !== 1) issues.push({ path: ['pools', name, 'hash_on'], message: 'expected exactly one of header, cookie or source_ip: true' })
    }
  }
  const routeNames = new Map<string, number>()
  c.routes.forEach((r, i) => {
    const prev = routeNames.get(r.name)
    if (prev !== undefined) issues.push({ path: ['routes', i, 'name'], message: `duplicate route name ${JSON.stringify(r.name)} (also routes[${prev}])` })
    routeNames.set(r.name, i)
    if (r.match.host !== undefined && !validHostPattern(r.match.host.toLowerCase())) {
      issues.push({ path: ['routes', i, 'match', 'host'], message: `expected a host name (example.com) or a wildcard (*.example.com), got ${JSON.stringify(r.match.host)}` })
    }
    if (r.compress?.enabled === true && !HAVE_ZSTD && r.compress.encodings.every((e) => e === 'zstd')) {
      issues.push({ path: ['routes', i, 'compress', 'encodings'], message: `zstd needs Node >= 22.15 (this is ${process.version}); add br or gzip` })
    }
    if ((r.pool === undefined) === (r.split === undefined)) {
      issues.push({ path: ['routes', i], message: 'expected exactly one of pool or split' })
    }
    if (r.pool !== undefined && c.pools[r.pool] === undefined) {
      issues.push({ path: ['routes', i, 'pool'], message: `unknown pool ${JSON.stringify(r.pool)} (${known})` })
    }
    if (r.split !== undefined) {
      const names = new Set<string>()
      let total = 0
      r.split.variants.forEach((v, j) => {
        if (names.has(v.name)) issues.push({ path: ['routes', i, 'split', 'variants', j, 'name'], message: `duplicate variant name ${JSON.stringify(v.name)}` })
        names.add(v.name)
        total += v.weight
        if (c.pools[v.pool] === undefined) issues.push({ path: ['routes', i, 'split', 'variants', j, 'pool'], message: `unknown pool ${JSON.stringify(v.pool)} (${known})` })
      })
      if (total <= 0) issues.push({ path: ['routes', i, 'split', 'variants'], message: 'expected the variant weights to add up to more than 0' })
    }
  })
  const bound = new Map<string, number>()
  const listenerNames = new Set<string>()
  c.listen.forEach((l, i) => {
    const where = `${l.host}:${l.port}`
    const prev = bound.get(where)
    if (prev !== undefined && l.port !== 0) issues.push({ path: ['listen', i, 'port'], message: `${where} is already used by listen[${prev}]` })
    bound.set(where, i)
    if (l.name !== undefined) {
      if (listenerNames.has(l.name)) issues.push({ path: ['listen', i, 'name'], message: `duplicate listener name ${JSON.stringify(l.name)}` })
      listenerNames.add(l.name)
    }
    if (l.tls !== undefined) {
      if (l.tls.certificates.length === 0 && !l.tls.self_signed) issues.push({ path: ['listen', i, 'tls'], message: 'expected certificates (cert and key files) or self_signed: true' })
      if (l.h2c) issues.push({ path: ['listen', i, 'h2c'], message: 'h2c is for plain listeners (a TLS listener offers h2 by ALPN: tls.alpn)' })
      if (l.redirect_https !== undefined) issues.push({ path: ['listen', i, 'redirect_https'], message: 'redirect_https is for plain listeners (this one already serves https)' })
    }
  })
  const sidecarNames = new Set<string>()
  c.sidecars.forEach((s, i) => {
    if (sidecarNames.has(s.name)) issues.push({ path: ['sidecars', i, 'name'], message: `duplicate sidecar name ${JSON.stringify(s.name)}` })
    sidecarNames.add(s.name)
  })
  c.trusted_proxies.forEach((cidr, i) => {
    if (parseCidr(cidr) === undefined) issues.push({ path: ['trusted_proxies', i], message: `expected an IP address or CIDR such as 10.0.0.0/8, got ${JSON.stringify(cidr)}` })
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
