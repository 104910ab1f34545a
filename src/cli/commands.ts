/** The `switchyard` subcommands: name -> module. Each module exports summary, usage, help and run(argv). */
export interface Command {
  summary: string
  usage: string
  /** The whole `--help` text. */
  help: string
  run(argv: string[]): Promise<number>
}

export const COMMANDS: Record<string, () => Promise<Command>> = {
  start: () => import('./commands/start.js'),
  check: () => import('./commands/check.js'),
  whoami: () => import('./commands/whoami.js'),
  'udp-server': () => import('./commands/udp-server.js'),
  'tcp-server': () => import('./commands/tcp-server.js'),
  'udp-client': () => import('./commands/udp-client.js'),
  'tcp-client': () => import('./commands/tcp-client.js'),
  'tcp-adapter': () => import('./commands/tcp-adapter.js'),
  'hash-password': () => import('./commands/hash-password.js')
}
