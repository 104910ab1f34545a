/**
 * A small PromQL tokenizer for the deploy tests: which metric names (and which label names) an
 * expression of the Grafana dashboard or the alert rules refers to. It is not a parser: it skips
 * strings, numbers and durations, range brackets, Grafana variables, function and aggregation
 * names, the binary keywords, and the label lists after by/without/on/ignoring/group_*; every
 * other identifier is a metric name.
 */

/** One vector selector: a metric name and the label names its {matchers} test. */
export interface Selector {
  name: string
  matchers: string[]
}

export interface ExprRefs {
  selectors: Selector[]
  /** Labels named in by/without/on/ignoring/group_left/group_right lists. */
  grouping: string[]
  /** Every string literal, unquoted (label_replace/label_join name the labels they create this way). */
  strings: string[]
}

// https://prometheus.io/docs/prometheus/latest/querying/operators/#aggregation-operators
const AGGREGATIONS = new Set(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio'])
const LABEL_LISTS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right'])
const KEYWORDS = new Set(['bool', 'offset', 'and', 'or', 'unless', 'atan2', 'inf', 'nan'])
const IDENT = /[a-zA-Z_:][a-zA-Z0-9_:]*/y
const NUMBER = /(?:0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)(?:[a-zA-Z]+[0-9]*)*/y
const MATCHER = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)/g

/** Index just past the string literal that starts at `i`. */
function skipString(s: string, i: number): number {
  const quote = s[i]
  let j = i + 1
  while (j < s.length && s[j] !== quote) j += s[j] === '\\' && quote !== '`' ? 2 : 1
  return j + 1
}

/** Index just past the bracket that closes the one at `i` (strings inside are skipped whole). */
function skipBalanced(s: string, i: number): number {
  const open = s[i]
  const close = open === '(' ? ')' : open === '[' ? ']' : '}'
  let depth = 0
  let j = i
  while (j < s.length) {
    const c = s[j]
    if (c === '"' || c === '\'' || c === '`') { j = skipString(s, j); continue }
    if (c === open) depth++
    else if (c === close && --depth === 0) return j + 1
    j++
  }
  throw new Error(`unbalanced ${open} at ${i} in: ${s}`)
}

function nextNonSpace(s: string, i: number): number {
  while (i < s.length && /\s/.test(s[i])) i++
  return i
}

function unquote(lit: string): string {
  return lit.slice(1, -1)
}

/** What an expression refers to: its selectors, grouping labels and string literals. */
export function exprRefs(expr: string): ExprRefs {
  const refs: ExprRefs = { selectors: [], grouping: [], strings: [] }
  let last: Selector | undefined
  let i = 0
  while (i < expr.length) {
    const c = expr[i]
    if (/\s/.test(c)) { i++; continue }
    if (c === '#') { // a comment runs to the end of the line
      while (i < expr.length && expr[i] !== '\n') i++
      continue
    }
    if (c === '"' || c === '\'' || c === '`') {
      const end = skipString(expr, i)
      refs.strings.push(unquote(expr.slice(i, end)))
      i = end
      last = undefined
      continue
    }
    if (c === '{') {
      const end = skipBalanced(expr, i)
      const body = expr.slice(i + 1, end - 1)
      const matchers = [...body.matchAll(MATCHER)]
      const nameMatcher = matchers.find((m) => m[1] === '__name__')
      const labels = matchers.map((m) => m[1]).filter((l) => l !== '__name__')
      if (last !== undefined) last.matchers.push(...labels)
      else refs.selectors.push({ name: nameMatcher === undefined ? '' : unquote(nameMatcher[2]), matchers: labels })
      last = undefined
      i = end
      continue
    }
    last = undefined
    if (c === '[') { i = skipBalanced(expr, i); continue } // a range or subquery: durations, $__rate_interval
    if (c === '$') { // a Grafana variable outside a matcher: $name, ${name}, ${name:format}
      i = expr[i + 1] === '{' ? expr.indexOf('}', i) + 1 : i + 1 + (/^\w*/.exec(expr.slice(i + 1))?.[0].length ?? 0)
      continue
    }
    NUMBER.lastIndex = i
    const num = /[0-9.]/.test(c) ? NUMBER.exec(expr) : null
    if (num !== null) { i += num[0].length; continue }
    IDENT.lastIndex = i
    const id = IDENT.exec(expr)
    if (id === null) { i++; continue } // operators, parentheses, commas, @
    const word = id[0]
    const lower = word.toLowerCase()
    i += word.length
    const next = nextNonSpace(expr, i)
    if (LABEL_LISTS.has(lower)) {
      if (expr[next] === '(') {
        const end = skipBalanced(expr, next)
        refs.grouping.push(...expr.slice(next + 1, end - 1).split(',').map((l) => l.trim()).filter((l) => l !== ''))
        i = end
      }
      continue
    }
    if (KEYWORDS.has(lower) || AGGREGATIONS.has(lower)) continue
    if (expr[next] === '(') continue // a function call
    last = { name: word, matchers: [] }
    refs.selectors.push(last)
  }
  return refs
}

/** The metric names an expression selects, each once. */
export function metricNames(expr: string): string[] {
  return [...new Set(exprRefs(expr).selectors.map((s) => s.name).filter((n) => n !== ''))]
}

/**
 * The PromQL inside a Grafana query variable: label_values(expr, label) and query_result(expr)
 * carry one; label_values(label) and metrics(regex) select no metric (undefined).
 */
export function variableQueryExpr(query: string): string | undefined {
  const q = query.trim()
  const lv = /^label_values\(([\s\S]*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)$/.exec(q)
  if (lv !== null) return lv[1]
  if (/^label_values\(\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)$/.test(q) || /^metrics\(/.test(q) || /^label_names\(/.test(q)) return undefined
  const qr = /^query_result\(([\s\S]*)\)$/.exec(q)
  if (qr !== null) return qr[1]
  throw new Error(`not a Grafana Prometheus variable query: ${query}`)
}

/** A scraped exposition: each family's type, and the label names seen on its samples. */
export interface Exposition {
  types: Map<string, string>
  /** By sample name (a histogram's _bucket, _sum and _count separately). */
  sampleLabels: Map<string, Set<string>>
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+/
const SAMPLE_LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g

/** Parses the Prometheus text format: the # TYPE lines and the samples' label names. */
export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>()
  const sampleLabels = new Map<string, Set<string>>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line)
    if (type !== null) { types.set(type[1], type[2]); continue }
    if (line.startsWith('#') || line.trim() === '') continue
    const sample = SAMPLE.exec(line)
    if (sample === null) throw new Error(`not a sample line: ${line}`)
    const labels = sampleLabels.get(sample[1]) ?? new Set<string>()
    for (const m of (sample[3] ?? '').matchAll(SAMPLE_LABEL)) labels.add(m[1])
    sampleLabels.set(sample[1], labels)
  }
  return { types, sampleLabels }
}

/** The family a referenced name belongs to: itself, or a histogram/summary for _bucket/_sum/_count. */
export function familyOf(name: string, types: ReadonlyMap<string, string>): string | undefined {
  if (types.has(name)) return name
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue
    const base = name.slice(0, -suffix.length)
    const type = types.get(base)
    if (type === 'histogram' || (type === 'summary' && suffix !== '_bucket')) return base
  }
  return undefined
}
