#!/usr/bin/env node
import { COMMANDS } from './commands.js'
import { UsageError } from './flags.js'

async function help(): Promise<string> {
  const rows = await Promise.all(Object.entries(COMMANDS).map(async ([name, load]) => `  ${name.padEnd(12)} ${(await load()).summary}`))
  return `usage: switchyard <command> [options]\n\ncommands:\n${rows.join('\n')}\n\nRun 'switchyard <command> --help' for a command's options.\n`
}

async function main(argv: string[]): Promise<number> {
  // As a sidecar we have an IPC channel to the supervisor; it must not keep us alive on its own.
  // (A cluster worker's channel is what keeps its shared listener alive: leave that one alone.)
  if (process.env.SWITCHYARD_SIDECAR_NAME !== undefined && process.env.SWITCHYARD_WORKER === undefined) process.channel?.unref()
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(await help())
    return name === undefined ? 2 : 0
  }
  const load = COMMANDS[name]
  if (load === undefined) {
    process.stderr.write(`switchyard: unknown command ${JSON.stringify(name)}\n\n${await help()}`)
    return 2
  }
  const cmd = await load()
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`usage: ${cmd.usage}\n${cmd.summary}\n`)
    return 0
  }
  try {
    return await cmd.run(rest)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`switchyard ${name}: ${err.message}\nusage: ${err.usage ?? cmd.usage}\n`)
      return 2
    }
    throw err
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
    // `start` has closed everything it opened when it returns; exit now rather than wait for a
    // handle we do not own (a cluster worker's IPC channel keeps it alive, for one). Writes to
    // stdout/stderr are synchronous on Linux for files and pipes, so no log line is lost.
    if (process.argv[2] === 'start') process.exit(code)
  },
  (err: unknown) => {
    process.stderr.write(`switchyard: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
  }
)
