/** Headless Chromium for the status page tests: finds a binary and renders a page. */
import { execFile } from 'node:child_process'
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'

const NAMES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable', 'chrome', 'headless_shell']

/** $CHROMIUM_BIN, else the first of the usual names on PATH; undefined when there is none. */
export function findChromium(): string | undefined {
  const candidates = [process.env.CHROMIUM_BIN, ...(process.env.PATH ?? '').split(delimiter).flatMap((dir) => dir === '' ? [] : NAMES.map((n) => join(dir, n)))]
  for (const c of candidates) {
    if (c === undefined || c === '') continue
    try {
      accessSync(c, constants.X_OK)
      return c
    } catch {
      // not there: the next one
    }
  }
  return undefined
}

/**
 * Loads `url` in headless Chromium, lets its scripts run for `budgetMs` of virtual time, and
 * returns the DOM as it is then. With `screenshot`, a second run saves a PNG there.
 */
export async function renderPage(bin: string, url: string, opts: { budgetMs?: number; screenshot?: string } = {}): Promise<string> {
  const profile = mkdtempSync(join(tmpdir(), 'sy-chromium-'))
  try {
    const common = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--hide-scrollbars', `--user-data-dir=${profile}`, `--virtual-time-budget=${opts.budgetMs ?? 8000}`]
    const dom = await run(bin, [...common, '--dump-dom', url])
    if (opts.screenshot !== undefined) await run(bin, [...common, '--window-size=1280,2400', `--screenshot=${opts.screenshot}`, url])
    return dom
  } finally {
    rmSync(profile, { recursive: true, force: true })
  }
}

function run(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: 60000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${bin} failed: ${err.message}\n${stderr}`))
      else resolve(stdout)
    })
  })
}

/** The text of the element with this id (tags dropped, whitespace collapsed), from a dumped DOM. */
export function sectionText(dom: string, id: string): string {
  const start = dom.indexOf(`id="${id}"`)
  if (start < 0) return ''
  const end = dom.indexOf('</section>', start)
  return textOf(dom.slice(dom.indexOf('>', start) + 1, end < 0 ? undefined : end))
}

export function textOf(html: string): string {
  return html.replace(/<[^>]*>/g, ' ').replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/\s+/g, ' ').trim()
}
