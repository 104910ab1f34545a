/**
 * A check of Prometheus text exposition (format 0.0.4) for the rules our metric definitions
 * must keep, without promtool: every family has one HELP and one TYPE before its samples and
 * appears once (a family split in two, as concatenating two registries that both define it
 * would give, is a duplicate); counters end in _total and nothing else does; each sample
 * belongs to its family's type (histogram _bucket/_sum/_count with `le`), appears once, and
 * has a number for a value. promtool (`promtool check metrics`) checks more (units, naming);
 * the metrics test runs it when it is installed.
 */

export interface LintProblem {
  line: number
  metric: string
  problem: string
}

interface Family {
  name: string
  help: boolean
  type: string | undefined
  samples: number
  /** Line of its first HELP/TYPE/sample, for duplicate reports. */
  line: number
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

/** The sample name suffixes each type allows after the family name. */
const SUFFIXES: Record<string, string[]> = {
  counter: [''],
  gauge: [''],
  untyped: [''],
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['', '_sum', '_count']
}

/** Problems in `text`, in line order; an empty list means it passes. */
export function lintExposition(text: string): LintProblem[] {
  const problems: LintProblem[] = []
  const families = new Map<string, Family>()
  const series = new Set<string>()
  let current: Family | undefined
  const add = (line: number, metric: string, problem: string): void => { problems.push({ line, metric, problem }) }

  /** The family `name` starts or continues here; a family seen before another one is a duplicate. */
  const enter = (name: string, line: number): Family => {
    if (current?.name === name) return current
    const seen = families.get(name)
    if (seen !== undefined) {
      add(line, name, `duplicate family: first seen on line ${seen.line}, another family in between`)
      current = seen
      return seen
    }
    current = { name, help: false, type: undefined, samples: 0, line }
    families.set(name, current)
    return current
  }

  const lines = text.split('\n')
  lines.forEach((raw, i) => {
    const n = i + 1
    const line = raw.trimEnd()
    if (line === '') return
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line)
      if (m === null) return // a plain comment
      const [, kind, name, rest = ''] = m
      if (!NAME.test(name)) add(n, name, 'invalid metric name')
      const f = enter(name, n)
      if (kind === 'HELP') {
        if (f.help) add(n, name, 'second HELP line')
        if (rest.trim() === '') add(n, name, 'empty HELP text')
        f.help = true
      } else {
        if (f.type !== undefined) add(n, name, 'second TYPE line')
        if (f.samples > 0) add(n, name, 'TYPE after its samples')
        if (!TYPES.has(rest.trim())) add(n, name, `unknown type "${rest.trim()}"`)
        f.type = rest.trim()
      }
      return
    }
    const sample = parseSample(line)
    if (sample === undefined) {
      add(n, line.slice(0, 60), 'unparsable sample line')
      return
    }
    const family = familyOf(sample.name, current)
    const f = enter(family, n)
    f.samples++
    if (f.type === undefined) add(n, sample.name, 'sample without a TYPE line before it')
    else if (!(SUFFIXES[f.type] ?? ['']).some((s) => sample.name === family + s)) add(n, sample.name, `sample name does not fit a ${f.type} named ${family}`)
    if (!f.help) add(n, sample.name, 'sample without a HELP line before it')
    for (const l of sample.labels.keys()) if (!LABEL.test(l) || l.startsWith('__')) add(n, sample.name, `invalid label name "${l}"`)
    if (f.type === 'histogram' && sample.name.endsWith('_bucket') && !sample.labels.has('le')) add(n, sample.name, 'histogram bucket without le')
    if (Number.isNaN(parseValue(sample.value))) add(n, sample.name, `value "${sample.value}" is not a number`)
    const key = `${sample.name}{${[...sample.labels].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`
    if (series.has(key)) add(n, sample.name, `duplicate series ${key}`)
    series.add(key)
  })

  for (const f of families.values()) {
    if (!f.help) add(f.line, f.name, 'no HELP line')
    if (f.type === undefined) add(f.line, f.name, 'no TYPE line')
    if (f.type === 'counter' && !f.name.endsWith('_total')) add(f.line, f.name, 'counter name does not end in _total')
    if (f.type !== undefined && f.type !== 'counter' && f.name.endsWith('_total')) add(f.line, f.name, `${f.type} name ends in _total (reserved for counters)`)
  }
  return problems.sort((a, b) => a.line - b.line)
}

/** Family names in the text, from their TYPE lines (for tests that expect some to exist). */
export function exposedFamilies(text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1], m[2])
  return out
}

/** A sample's family: the current one when the name extends it (histogram parts), else the name. */
function familyOf(name: string, current: Family | undefined): string {
  if (current !== undefined && name !== current.name && name.startsWith(current.name)) {
    const suffix = name.slice(current.name.length)
    if (['_bucket', '_sum', '_count'].includes(suffix)) return current.name
  }
  return name
}

function parseValue(v: string): number {
  if (v === '+Inf' || v === 'Inf') return Infinity
  if (v === '-Inf') return -Infinity
  if (v === 'NaN') return 0 // a legal value
  return v.trim() === '' ? NaN : Number(v)
}

/** `name{a="x",b="y"} value [timestamp]`; label values may hold escaped quotes, commas and braces. */
function parseSample(line: string): { name: string; labels: Map<string, string>; value: string } | undefined {
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)
  if (nameMatch === null) return undefined
  const name = nameMatch[0]
  let i = name.length
  const labels = new Map<string, string>()
  if (line[i] === '{') {
    i++
    for (;;) {
      while (line[i] === ' ') i++
      if (line[i] === '}') { i++; break }
      const key = /^[^=\s]+/.exec(line.slice(i))
      if (key === null) return undefined
      i += key[0].length
      if (line[i] !== '=' || line[i + 1] !== '"') return undefined
      i += 2
      let value = ''
      for (; i < line.length && line[i] !== '"'; i++) {
        if (line[i] === '\\') { i++; value += line[i] === 'n' ? '\n' : line[i] } else value += line[i]
      }
      if (line[i] !== '"') return undefined
      i++
      labels.set(key[0], value)
      if (line[i] === ',') i++
      else if (line[i] !== '}') return undefined
    }
  }
  const rest = line.slice(i).trim().split(/\s+/)
  if (rest.length < 1 || rest.length > 2 || rest[0] === '') return undefined
  return { name, labels, value: rest[0] }
}
