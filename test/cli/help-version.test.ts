import t from 'tap'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { runCli } from '../fixtures/cli.js'
import { COMMANDS } from '../../src/cli/commands.js'
import { defaultOf, type OptionSpecs } from '../../src/cli/help.js'

const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version: string }

t.test('--version, -V and version print package.json\'s version', async (t) => {
  for (const args of [['--version'], ['-V'], ['version']]) {
    const r = await runCli(args)
    t.equal(r.code, 0, args.join(' '))
    t.equal(r.stdout, `switchyard ${pkg.version} (node ${process.version})\n`)
  }
})

t.test('--help lists every command; no command is a usage error', async (t) => {
  const r = await runCli(['--help'])
  t.equal(r.code, 0)
  for (const name of Object.keys(COMMANDS)) t.match(r.stdout, new RegExp(`^  ${name} +\\S`, 'm'), name)
  t.match(r.stdout, /--version/)
  const none = await runCli([])
  t.equal(none.code, 2)
  t.match(none.stderr, /usage: switchyard <command>/)
})

t.test('every command\'s --help: what it does, each option with its default, environment, an example', async (t) => {
  for (const [name, load] of Object.entries(COMMANDS)) {
    const cmd = await load() as Awaited<ReturnType<typeof load>> & { options: OptionSpecs }
    const r = await runCli([name, '--help'])
    t.equal(r.code, 0, `${name} --help exits 0`)
    t.equal(r.stdout, cmd.help, `${name} prints its help`)
    const out = r.stdout
    t.ok(out.startsWith(`usage: switchyard ${name}`), `${name}: usage first`)
    for (const [flag, o] of Object.entries(cmd.options)) {
      const line = out.split('\n').findIndex((l) => l.includes(`--${flag}`) && /^ {2}(-\w, | {4})--/.test(l))
      t.ok(line >= 0, `${name} documents --${flag}`)
      const def = defaultOf(o)
      // The default is printed after the option (the text may wrap onto the next line).
      const block = out.split('\n').slice(line, line + 3).join(' ').replace(/\s+/g, ' ')
      if (o.required === true) t.match(block, '(required)', `${name} --${flag} is required`)
      else if (def !== undefined) t.match(block, `(default: ${def})`, `${name} --${flag} shows its default`)
    }
    t.match(out, /\nEnvironment:\n {2}\S/, `${name}: environment`)
    t.match(out, new RegExp(`\\nExamples?:\\n {2}.*switchyard ${name}`), `${name}: example`)
    const viaHelp = await runCli(['help', name])
    t.equal(viaHelp.stdout, cmd.help, `switchyard help ${name}`)
  }
  const start = (await runCli(['start', '--help'])).stdout
  t.match(start, /SWITCHYARD_CONFIG/)
  t.match(start, /REDIS_URL/)
  t.match((await runCli(['udp-server', '--help'])).stdout.replace(/\s+/g, ' '), /--rate N datagrams per second .*\(default: 1000\)/)
})

t.test('after --, --help is a message, not a flag', async (t) => {
  const r = await runCli(['udp-client', '--port', '1', '--timeout-ms', '50', '--retries', '0', '--', '--help'])
  t.not(r.stdout.startsWith('usage:'), true)
  t.equal(r.code, 1, 'it was sent (and nobody answered)')
})
