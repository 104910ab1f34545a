/** Runs `promtool check metrics` on exposition text, when promtool is installed (not a test file: no .test). */
import { spawn, spawnSync } from 'node:child_process'

/** Why promtool cannot be used here, or undefined when it can. */
export function promtoolMissing(): string | undefined {
  const probe = spawnSync('promtool', ['--version'], { encoding: 'utf8', timeout: 10000 })
  if (probe.error !== undefined) return `promtool is not on PATH (${(probe.error as NodeJS.ErrnoException).code ?? probe.error.message}); install it (Debian: apt-get install prometheus) to run this check`
  return undefined
}

/** promtool's verdict: exit code 0 and no output means the text passed every check and lint rule. */
export function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { output += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { output += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000)
    child.once('error', (err) => { clearTimeout(timer); reject(err) })
    child.once('close', (code) => { clearTimeout(timer); resolve({ code, output: output.trim() }) })
    child.stdin.end(text)
  })
}
