/**
 * `${VAR}` and `${VAR:-default}` from the environment, applied to YAML scalar values after
 * parsing (as docker compose does), so a variable's content can never change the file's
 * structure. `$$` is a literal `$`. A plain (unquoted) scalar that is one whole expression is
 * re-typed after substitution, so `port: ${PORT:-8080}` is a number.
 */
const EXPR = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g
const WHOLE = /^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$/

export interface InterpolationResult {
  value: string
  /** Variables used with no default and not set. */
  missing: string[]
}

export function interpolate(text: string, env: NodeJS.ProcessEnv): InterpolationResult {
  const missing: string[] = []
  const value = text.replace(EXPR, (whole, name: string | undefined, def: string | undefined) => {
    if (whole === '$$') return '$'
    const v = env[name as string]
    if (v !== undefined && v !== '') return v
    if (def !== undefined) return def
    if (v === '') return ''
    missing.push(name as string)
    return ''
  })
  return { value, missing }
}

/** Types a substituted plain scalar the way YAML would have typed the literal text. */
export function retype(text: string, wasWholeExpression: boolean): string | number | boolean | null {
  if (!wasWholeExpression) return text
  if (/^-?(0|[1-9][0-9]*)$/.test(text)) return Number(text)
  if (/^-?(0|[1-9][0-9]*)\.[0-9]+$/.test(text)) return Number(text)
  if (text === 'true') return true
  if (text === 'false') return false
  if (text === '' || text === 'null' || text === '~') return null
  return text
}

export function isWholeExpression(text: string): boolean {
  return WHOLE.test(text)
}
