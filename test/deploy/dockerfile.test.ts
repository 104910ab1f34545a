/**
 * The Dockerfile without a Docker engine: its stages are parsed and checked, the runtime stage's
 * file system is rebuilt in a temporary directory exactly as its COPY lines say (the `deps`
 * stage's RUN is run for real, from the npm cache), and the image's ENTRYPOINT, CMD and
 * HEALTHCHECK are run from there.
 */
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, posix, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parseDocument } from 'yaml'
import { parseConfig } from '../../src/config/load.js'
import { deadPort } from '../fixtures/upstream.js'
import { fetchText, waitFor } from '../fixtures/proxy.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('../../../', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> }

interface Instruction { cmd: string; args: string; line: number }
interface Stage { name?: string; image: string; instructions: Instruction[] }

/** Dockerfile syntax as BuildKit reads it: `\` continues a line, `#` lines are comments (also inside a continuation). */
function parseDockerfile(text: string): Stage[] {
  const args = new Map<string, string>()
  const stages: Stage[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const start = i
    let logical = lines[i].trim()
    if (logical === '' || logical.startsWith('#')) continue
    while (logical.endsWith('\\')) {
      logical = logical.slice(0, -1)
      i++
      const next = (lines[i] ?? '').trim()
      if (!next.startsWith('#')) logical += ` ${next}`
    }
    const m = /^(\S+)\s*(.*)$/s.exec(logical)
    if (m === null) continue
    const cmd = m[1].toUpperCase()
    const rest = m[2].replace(/\s+/g, ' ').trim()
    if (cmd === 'ARG' && stages.length === 0) {
      const [k, v = ''] = rest.split('=')
      args.set(k, v)
    } else if (cmd === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)
      if (f === null) throw new Error(`line ${start + 1}: FROM ${rest}`)
      const image = f[1].replace(/\$\{(\w+)\}|\$(\w+)/g, (_s, a: string | undefined, b: string | undefined) => args.get(a ?? b ?? '') ?? '')
      stages.push({ name: f[2], image, instructions: [] })
    } else {
      if (stages.length === 0) throw new Error(`line ${start + 1}: ${cmd} before FROM`)
      stages[stages.length - 1].instructions.push({ cmd, args: rest, line: start + 1 })
    }
  }
  return stages
}

/** COPY's flags (--from=, --chown=) and its sources and destination. */
function parseCopy(args: string): { from?: string; sources: string[]; dest: string } {
  const words = args.startsWith('[') ? JSON.parse(args) as string[] : args.split(' ')
  const flags = new Map<string, string>()
  while (words[0]?.startsWith('--') === true) {
    const [k, v = ''] = words.shift()!.slice(2).split('=')
    flags.set(k, v)
  }
  const dest = words.pop()!
  return { from: flags.get('from'), sources: words, dest }
}

/** Exec form only: a shell form would run under /bin/sh and the signals would go to the shell. */
function execForm(args: string): string[] {
  if (!args.startsWith('[')) throw new Error(`expected the exec (JSON) form, got ${args}`)
  return JSON.parse(args) as string[]
}

/** .dockerignore as BuildKit applies it: the last matching pattern wins, a pattern also matches a path under what it names. */
function dockerIgnored(patterns: string[], path: string): boolean {
  const toRegExp = (p: string): RegExp => new RegExp('^' + p.split('/').map((seg) => seg === '**'
    ? '.*'
    : seg.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')).join('/') + '$')
  let ignored = false
  const parts = path.split('/')
  for (const raw of patterns) {
    const exclude = !raw.startsWith('!')
    const p = posix.normalize(raw.replace(/^!/, '').replace(/^\//, '')).replace(/\/$/, '')
    const re = toRegExp(p)
    if (parts.some((_s, i) => re.test(parts.slice(0, i + 1).join('/')))) ignored = exclude
  }
  return ignored
}

const stages = parseDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8'))
const runtime = stages[stages.length - 1]
const named = (name: string): Stage => {
  const s = stages.find((x) => x.name === name)
  if (s === undefined) throw new Error(`no stage named ${name}`)
  return s
}
const all = (s: Stage, cmd: string): Instruction[] => s.instructions.filter((i) => i.cmd === cmd)
const last = (s: Stage, cmd: string): Instruction => {
  const found = all(s, cmd)
  if (found.length === 0) throw new Error(`the ${s.name ?? 'final'} stage has no ${cmd}`)
  return found[found.length - 1]
}
const workdir = (s: Stage): string => last(s, 'WORKDIR').args

t.test('stages: build and deps from the Node 20 slim image, then a runtime on the same image', async (t) => {
  t.same(stages.map((s) => s.name), ['build', 'deps', undefined])
  for (const s of stages) t.equal(s.image, 'node:20-bookworm-slim', `${s.name ?? 'runtime'} stage image`)
  const build = named('build')
  t.ok(all(build, 'RUN').some((r) => /\btsc -p tsconfig\.json\b/.test(r.args)), 'the build stage compiles')
  t.same(all(build, 'COPY').flatMap((c) => parseCopy(c.args).sources).filter((s) => /^(test|bench)\b/.test(s)), [], 'tests and benchmarks are not even compiled')
  const npmCi = stages.flatMap((s) => all(s, 'RUN')).filter((r) => /\bnpm ci\b/.test(r.args))
  t.equal(npmCi.length, 2)
  // `prepare` runs tsc: in `build` before the sources are copied, in `deps` without TypeScript installed.
  for (const r of npmCi) t.match(r.args, /--ignore-scripts/, `line ${r.line}: npm ci skips lifecycle scripts`)
  t.match(last(named('deps'), 'RUN').args, /npm ci --omit=dev\b/)
  t.same(all(runtime, 'RUN').filter((r) => /\bnpm\b/.test(r.args)), [], 'no npm run in the runtime stage')
})

t.test('runtime stage: production files only, non-root, exec-form entrypoint, ports of the shipped config', async (t) => {
  const copies = all(runtime, 'COPY').map((c) => parseCopy(c.args))
  const fromBuild = copies.filter((c) => c.from === 'build')
  t.same(fromBuild.map((c) => c.sources), [[`${workdir(named('build'))}/dist/src`]], 'from the build stage: dist/src alone')
  t.same(copies.filter((c) => c.from === 'deps').map((c) => c.sources), [[`${workdir(named('deps'))}/node_modules`]], 'from deps: the production node_modules')
  const sources = copies.flatMap((c) => c.sources)
  t.same(sources.filter((s) => /(^|\/)(test|bench|src)(\/|$)/.test(s) && !s.endsWith('/dist/src')), [], 'no tests, benchmarks or TypeScript sources')
  t.same(sources.filter((s) => /tsconfig|\.ts$/.test(s)), [])
  const user = last(runtime, 'USER').args
  t.notMatch(user, /^(root|0)(:|$)/, 'the process does not run as root')
  t.equal(user, 'node', 'the node user of the official image (uid 1000, as deploy/kubernetes runs it)')
  const entry = execForm(last(runtime, 'ENTRYPOINT').args)
  t.same(entry.slice(0, 2), ['/usr/bin/tini', '--'], 'tini is PID 1: it forwards signals and reaps orphans')
  t.ok(all(runtime, 'RUN').some((r) => /apt-get install .*\btini\b/.test(r.args)), 'and is installed')
  t.same(entry.slice(2), ['node', 'dist/src/cli/main.js'])
  t.same(execForm(last(runtime, 'CMD').args), ['start', '--config', 'upstreams.yaml'])
  const env = new Map(all(runtime, 'ENV').flatMap((e) => [...e.args.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1], m[2]] as const)))
  t.equal(env.get('SWITCHYARD_ADMIN_HOST'), '0.0.0.0', 'the admin listener is reachable from outside the container')
  t.equal(env.get('NODE_ENV'), 'production')
  const config = parseConfig(readFileSync(join(root, 'upstreams.yaml'), 'utf8'), 'upstreams.yaml', { ...Object.fromEntries(env) })
  // Listeners bound to loopback (the lab's L4 listeners on 127.0.0.1) are not reachable from outside a container anyway.
  const ports = [...config.listen.filter((l) => !/^(127\.|::1$|localhost$)/.test(l.host)).map((l) => l.port), config.admin.port].sort()
  const exposed = all(runtime, 'EXPOSE').flatMap((e) => e.args.split(' ').map((p) => Number(p.replace(/\/tcp$/, '')))).sort()
  t.same(exposed, ports, 'EXPOSE lists every port the shipped upstreams.yaml listens on beyond loopback')
  t.equal(config.admin.host, '0.0.0.0')
})

t.test('HEALTHCHECK asks /healthz on the admin port with node (slim images have no curl)', async (t) => {
  const hc = last(runtime, 'HEALTHCHECK').args
  const m = /^((?:--\S+\s+)*)CMD\s+(\[.*\])$/.exec(hc)
  t.ok(m, 'exec-form CMD')
  t.match(m![1], /--start-period=/)
  const cmd = JSON.parse(m![2]) as string[]
  t.equal(cmd[0], 'node')
  t.match(cmd.join(' '), /\/healthz/)
  t.match(cmd.join(' '), /127\.0\.0\.1/)
})

t.test('.dockerignore lets in what the Dockerfile copies and keeps out everything else', async (t) => {
  const patterns = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
  const fromContext = stages.flatMap((s) => all(s, 'COPY').map((c) => parseCopy(c.args)).filter((c) => c.from === undefined).flatMap((c) => c.sources))
  t.ok(fromContext.length > 0)
  for (const s of fromContext) t.notOk(dockerIgnored(patterns, s), `${s} is in the build context`)
  t.notOk(dockerIgnored(patterns, 'src/cli/main.ts'), 'files under src/ too')
  for (const out of ['node_modules', 'node_modules/fastify/package.json', 'dist/src/cli/main.js', '.git/HEAD', 'test/deploy/dockerfile.test.ts',
    'bench/results/x.json', '.tap/processinfo', '.env', 'README-snippet.md', 'deploy/kubernetes/deployment.yaml']) {
    t.ok(dockerIgnored(patterns, out), `${out} stays out`)
  }
})

t.test('every package the compiled proxy imports is a production dependency or a Node builtin', async (t) => {
  const builtins = new Set(builtinModules)
  const missing = new Set<string>()
  const seen = new Set<string>()
  let files = 0
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.name.endsWith('.js')) {
        files++
        const text = readFileSync(p, 'utf8')
        for (const m of text.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm)) {
          const spec = m[1] ?? m[2] ?? m[3]
          if (spec.startsWith('.') || spec.startsWith('node:') || builtins.has(spec)) continue
          const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]
          seen.add(name)
          if (!(name in pkg.dependencies)) missing.add(`${name} (${relative(root, p)})`)
        }
      }
    }
  }
  walk(join(root, 'dist/src'))
  t.ok(files > 50, `${files} compiled files read`)
  for (const name of ['fastify', 'undici', 'ioredis', 'prom-client', 'yaml']) t.ok(seen.has(name), `${name} is among the imports found`)
  t.same([...missing], [], 'imported but only a devDependency (or not declared)')
})

t.test('the runtime stage, rebuilt from its COPY lines, runs: version, check, start, HEALTHCHECK, SIGTERM', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-image-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const stageDir = new Map<string, string>()
  // The build stage's /app is this checkout after `tsc` (dist/src is what it compiles).
  stageDir.set('build', root)
  // The deps stage is run for real: its context COPYs, then its RUN (npm ci, from the cache when it can).
  const deps = named('deps')
  const depsDir = join(dir, 'deps')
  mkdirSync(depsDir)
  for (const c of all(deps, 'COPY').map((x) => parseCopy(x.args))) for (const s of c.sources) cpSync(join(root, s), join(depsDir, s))
  for (const r of all(deps, 'RUN')) {
    // Only `npm ci` with flags is carried out here, on this machine (anything else, such as a
    // cache clean that would empty this machine's npm cache, fails the test instead of running).
    const npmCi = /^npm ci( --[\w=-]+)*$/
    t.match(r.args, npmCi, `line ${r.line}: the deps stage runs npm ci alone`)
    if (!npmCi.test(r.args)) return
    await run('npm', r.args.split(' ').slice(1), { cwd: depsDir, env: { ...process.env, npm_config_prefer_offline: 'true', npm_config_loglevel: 'error' }, timeout: 120000 })
  }
  stageDir.set('deps', depsDir)
  // The runtime stage: each COPY into WORKDIR (its RUN installs tini, which the entrypoint's tail does not need).
  const app = join(dir, 'app')
  const wd = workdir(runtime)
  for (const c of all(runtime, 'COPY').map((x) => parseCopy(x.args))) {
    const dest = join(app, posix.relative(wd, posix.resolve(wd, c.dest)))
    for (const s of c.sources) {
      const from = c.from === undefined ? join(root, s) : join(stageDir.get(c.from)!, posix.relative(workdir(named(c.from)), s))
      const target = c.dest.endsWith('/') ? join(dest, posix.basename(s)) : dest
      mkdirSync(dirname(target), { recursive: true })
      cpSync(from, target, { recursive: true, filter: (p) => !p.endsWith('.map') })
    }
  }
  t.same(readdirSync(app).sort(), ['dist', 'node_modules', 'package.json', 'upstreams.yaml'])
  t.same(readdirSync(join(app, 'dist')), ['src'])
  t.notOk(readdirSync(join(app, 'node_modules')).includes('typescript'), 'no dev dependency in the image')
  t.notOk(readdirSync(join(app, 'node_modules')).includes('tap'))

  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: app }
  for (const e of all(runtime, 'ENV')) for (const m of e.args.matchAll(/(\w+)=(\S+)/g)) env[m[1]] = m[2]
  const entry = execForm(last(runtime, 'ENTRYPOINT').args).slice(2) // without tini
  const image = (args: string[], extra: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string }> =>
    run(process.execPath, [...entry.slice(1), ...args], { cwd: app, env: { ...env, ...extra }, timeout: 20000 })

  t.equal((await image(['--version'])).stdout.trim(), `switchyard ${pkg.version} (node ${process.version})`)
  t.match((await image(['check', 'upstreams.yaml'])).stdout, /upstreams\.yaml: ok/)
  // docker-compose.yml runs this image with its own commands (the proxy, the whoami backends):
  // each is a command line the entrypoint accepts (--help: parsed, then nothing started).
  const compose = parseDocument(readFileSync(join(root, 'docker-compose.yml'), 'utf8')).toJS() as { services: Record<string, { build?: string; image?: string; command?: string[] }> }
  const built = Object.values(compose.services).find((s) => s.build === '.')?.image
  const commands = Object.entries(compose.services).filter(([, s]) => s.image === built && s.command !== undefined)
  t.ok(commands.length >= 2, 'compose runs the image with several commands')
  for (const [name, s] of commands) {
    const r = await image([...s.command!, '--help'])
    t.match(r.stdout, new RegExp(`^usage: switchyard ${s.command![0]} `), `compose service ${name}: ${s.command!.join(' ')}`)
  }

  // CMD as the image runs it, on free ports, without the demo sidecars (their ports are fixed).
  const [http, https, admin] = [await deadPort(), await deadPort(), await deadPort()]
  const hcArgs = JSON.parse(/CMD\s+(\[.*\])$/.exec(last(runtime, 'HEALTHCHECK').args)![1]) as string[]
  const healthcheck = (): Promise<number> => new Promise((resolve) => {
    const c = spawn(process.execPath, hcArgs.slice(1), { cwd: app, env: { ...env, SWITCHYARD_ADMIN_PORT: String(admin) }, stdio: 'ignore' })
    c.on('exit', (code) => resolve(code ?? -1))
  })
  t.equal(await healthcheck(), 1, 'unhealthy while nothing listens')
  const cmd = execForm(last(runtime, 'CMD').args)
  const proc = spawn(process.execPath, [...entry.slice(1), ...cmd], {
    cwd: app,
    env: { ...env, SWITCHYARD_PORT: String(http), SWITCHYARD_TLS_PORT: String(https), SWITCHYARD_ADMIN_PORT: String(admin), DEMO_SIDECARS: 'false', LAB_SIDECARS: 'false', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let stderr = ''
  proc.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGKILL') })
  // Polled over HTTP (a node process per try would be costly), then the HEALTHCHECK command itself.
  await waitFor(async () => { try { return (await fetchText(`http://127.0.0.1:${admin}/healthz`)).status === 200 } catch { return proc.exitCode !== null } }, 20000, '/healthz')
  t.equal(proc.exitCode, null, `the image's CMD keeps running ${stderr}`)
  t.equal(await healthcheck(), 0, 'HEALTHCHECK passes')
  proc.kill('SIGTERM')
  t.equal(await exited, 0, 'SIGTERM: drained and exited 0')
})
