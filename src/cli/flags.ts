import { parseArgs, type ParseArgsConfig } from 'node:util'

/** A mistake in how a command was called: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string, readonly usage?: string) {
    super(message)
    this.name = 'UsageError'
  }
}

/** parseArgs, strict; `options` may carry help fields (help.ts OptionSpec), which it ignores. */
export function parseFlags<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O, usage: string, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true })
  } catch (err) {
    throw new UsageError((err as Error).message, usage)
  }
}
