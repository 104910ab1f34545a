import { readFileSync } from 'node:fs'

/** package.json's version: this file runs as dist/src/cli/version.js, three levels below it. */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown }
  return String(pkg.version)
}
