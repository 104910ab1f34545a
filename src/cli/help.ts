/**
 * A command's help text, written from the same option table its flags are parsed with, so an
 * option cannot exist without being documented, nor be documented with a stale default.
 */

/** One flag: what node:util parseArgs needs, plus what the help says about it. */
export interface OptionSpec {
  type: 'string' | 'boolean'
  short?: string
  default?: string | boolean
  /** The value's placeholder in the help (N, HOST, FILE). */
  value?: string
  /** What the option does. */
  help: string
  /** Said instead of the default when the default is not a constant (or there is none). */
  defaultText?: string
  /** The command cannot run without it. */
  required?: boolean
}

export type OptionSpecs = Record<string, OptionSpec>

export interface CommandHelp {
  /** `switchyard <name>` */
  name: string
  summary: string
  usage: string
  /** Paragraphs after the summary: what the command does, in a few lines. */
  description: string
  options: OptionSpecs
  /** Positional arguments: [name, what it is]. */
  positionals?: [string, string][]
  /** Environment variables the command reads: [name, what for]. */
  env: [string, string][]
  examples: string[]
}

const WIDTH = 100

/** Wraps `text` to WIDTH columns, every line after the first indented by `indent`. */
function wrap(text: string, indent: number, first = indent): string {
  const words = text.split(/\s+/).filter((w) => w !== '')
  const lines: string[] = []
  let line = ''
  let room = WIDTH - first
  for (const w of words) {
    if (line !== '' && line.length + 1 + w.length > room) {
      lines.push(line)
      line = w
      room = WIDTH - indent
    } else {
      line = line === '' ? w : `${line} ${w}`
    }
  }
  lines.push(line)
  return lines.join(`\n${' '.repeat(indent)}`)
}

function table(rows: [string, string][]): string {
  const col = Math.min(30, Math.max(...rows.map(([l]) => l.length)) + 2)
  return rows.map(([left, right]) => {
    const head = `  ${left}`
    if (head.length + 1 > col + 2) return `${head}\n${' '.repeat(col + 2)}${wrap(right, col + 2)}`
    return `${head.padEnd(col + 2)}${wrap(right, col + 2)}`
  }).join('\n')
}

export function defaultOf(o: OptionSpec): string | undefined {
  if (o.defaultText !== undefined) return o.defaultText
  if (o.type === 'boolean') return o.default === true ? 'on' : 'off'
  return o.default === undefined ? undefined : String(o.default)
}

export function formatHelp(h: CommandHelp): string {
  const parts = [`usage: ${h.usage}`, '', wrap(`${h.summary[0].toUpperCase()}${h.summary.slice(1)}.`, 0)]
  for (const p of h.description.split('\n\n')) parts.push('', wrap(p, 0))
  if (h.positionals !== undefined && h.positionals.length > 0) parts.push('', 'Arguments:', table(h.positionals))
  const rows: [string, string][] = Object.entries(h.options).map(([name, o]) => {
    const flag = `${o.short === undefined ? '    ' : `-${o.short}, `}--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`
    const def = defaultOf(o)
    return [flag, o.required === true ? `${o.help} (required)` : def === undefined ? o.help : `${o.help} (default: ${def})`]
  })
  rows.push(['-h, --help', 'print this help and exit'])
  parts.push('', 'Options:', table(rows))
  parts.push('', 'Environment:', h.env.length === 0 ? '  none' : table(h.env))
  parts.push('', h.examples.length === 1 ? 'Example:' : 'Examples:', ...h.examples.map((e) => `  ${e}`))
  parts.push('', 'Exit status: 0 success, 1 runtime or configuration error, 2 usage error.')
  return `${parts.join('\n')}\n`
}
