/**
 * Walks the config data beside its JSON Schema (as TypeBox builds it): the passes the schema
 * alone cannot do, empty values and duration strings, find the schema of each value here.
 */
import { DURATION_DESCRIPTION, DURATION_PATTERN, MAX_MS } from './schema.js'

export type SchemaNode = Record<string, unknown>
export type Path = (string | number)[]

export function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** The schema of `parent[key]`, or undefined when the schema has no place for it (an unknown key). */
export function childSchema(parent: SchemaNode | undefined, key: string | number): SchemaNode | undefined {
  if (parent === undefined) return undefined
  if (Array.isArray(parent.anyOf)) {
    for (const branch of parent.anyOf as SchemaNode[]) {
      const s = childSchema(branch, key)
      if (s !== undefined) return s
    }
    return undefined
  }
  if (typeof key === 'number') return isMapping(parent.items) ? parent.items : undefined
  if (isMapping(parent.properties) && isMapping(parent.properties[key])) return parent.properties[key]
  if (isMapping(parent.patternProperties)) {
    for (const [re, s] of Object.entries(parent.patternProperties)) if (new RegExp(re, 'u').test(key) && isMapping(s)) return s
  }
  return isMapping(parent.additionalProperties) ? parent.additionalProperties : undefined
}

/** True when `key` must be present in a mapping of this schema and has no default. */
export function isRequired(parent: SchemaNode | undefined, key: string, child: SchemaNode): boolean {
  if (child.default !== undefined) return false
  if (parent !== undefined && isMapping(parent.patternProperties)) return true // a record's entry
  return Array.isArray(parent?.required) && parent.required.includes(key)
}

export function isDuration(s: SchemaNode | undefined): boolean {
  return s !== undefined && s.description === DURATION_DESCRIPTION && Array.isArray(s.anyOf)
}

/** The smallest value a duration key takes, in milliseconds. */
export function durationMinimum(s: SchemaNode): number {
  const int = (s.anyOf as SchemaNode[]).find((b) => b.type === 'integer')
  return typeof int?.minimum === 'number' ? int.minimum : 0
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const DURATION = new RegExp(DURATION_PATTERN)

/**
 * "1.5s" -> 1500. Undefined when the text is not a duration or does not come to whole
 * milliseconds ("2.5ms", "0.0001s"); computed on the digits, so "1.1s" is 1100, not 1100.0000000000002.
 */
export function parseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined
  const m = /^([0-9]+)(?:\.([0-9]+))?([a-z]+)$/.exec(text) as RegExpExecArray
  const unit = UNIT_MS[m[3]]
  const whole = Number(m[1]) * unit
  const digits = m[2] ?? ''
  if (digits === '') return whole
  const scale = 10 ** digits.length
  const frac = Number(digits) * unit
  if (frac % scale !== 0) return undefined
  return whole + frac / scale
}

export interface WalkIssue { path: Path; message: string }

/**
 * Replaces every duration string in `data` by its milliseconds, in place. Strings the schema
 * already rejected are left to its error; a duration that is not whole milliseconds, or is
 * under the key's minimum or over what a timer holds, is an issue here.
 */
export function convertDurations(data: unknown, schema: SchemaNode | undefined, path: Path = []): WalkIssue[] {
  const issues: WalkIssue[] = []
  const visit = (holder: Record<string, unknown> | unknown[], key: string | number, s: SchemaNode | undefined, at: Path): void => {
    const v = (holder as Record<string | number, unknown>)[key]
    if (isDuration(s) && typeof v === 'string') {
      if (!DURATION.test(v)) return
      const ms = parseDuration(v)
      const min = durationMinimum(s as SchemaNode)
      if (ms === undefined) issues.push({ path: at, message: `expected whole milliseconds, got ${JSON.stringify(v)}` })
      else if (ms < min) issues.push({ path: at, message: `expected at least ${min} ms, got ${JSON.stringify(v)} (${ms} ms)` })
      else if (ms > MAX_MS) issues.push({ path: at, message: `expected at most ${MAX_MS} ms (about 24.8 days), got ${JSON.stringify(v)}` })
      else (holder as Record<string | number, unknown>)[key] = ms
      return
    }
    walk(v, s, at)
  }
  const walk = (v: unknown, s: SchemaNode | undefined, at: Path): void => {
    if (s === undefined) return
    if (Array.isArray(v)) v.forEach((_item, i) => visit(v, i, childSchema(s, i), [...at, i]))
    else if (isMapping(v)) for (const k of Object.keys(v)) visit(v, k, childSchema(s, k), [...at, k])
  }
  walk(data, schema, path)
  return issues
}
