#!/usr/bin/env node
import { COMMANDS } from './commands.js'
import { UsageError } from './flags.js'
import { packageVersion } from './version.js'

function version(): string {
  return `switchyard ${packageVersion()} (node ${process.version})`
}

async function help(): Promise<string> {
  const rows = await Promise.all(Object.entries(COMMANDS).map(async ([name, load]) => `  ${name.padEnd(12)} ${(await load()).summary}`))
  return 'usage: switchyard <command> [options]\n       switchyard <command> --help\n       switchyard --version\n\n' +
    `commands:\n${rows.join('\n')}\n  ${'version'.padEnd(12)} print the version and exit\n  ${'help'.padEnd(12)} print this list, or a command's help (switchyard help start)\n\n` +
    "Run 'switchyard <command> --help' for what a command does, its options and their defaults, and the\nenvironment variables it reads. Exit status: 0 success, 1 runtime or configuration error, 2 usage error.\n"
}

async function main(argv: string[]): Promise<number> {
  // As a sidecar we have an IPC channel to the supervisor; it must not keep us alive on its own.
  // (A cluster worker's channel is what keeps its shared listener alive: leave that one alone.)
  if (process.env.SWITCHYARD_SIDECAR_NAME !== undefined && process.env.SWITCHYARD_WORKER === undefined) process.channel?.unref()
  const [name, ...rest] = argv
  if (name === undefined) {
    process.stderr.write(await help())
    return 2
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    process.stdout.write(`${version()}\n`)
    return 0
  }
  if (name === 'help' && rest[0] !== undefined && COMMANDS[rest[0]] !== undefined) return await main([rest[0], '--help'])
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(await help())
    return 0
  }
  const load = COMMANDS[name]
  if (load === undefined) {
    process.stderr.write(`switchyard: unknown command ${JSON.stringify(name)}\n\n${await help()}`)
    return 2
  }
  const cmd = await load()
  // Only before a `--`: after it, `--help` is a message (switchyard udp-client -- --help).
  const flags = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest
  if (flags.includes('--help') || flags.includes('-h')) {
    process.stdout.write(cmd.help)
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
