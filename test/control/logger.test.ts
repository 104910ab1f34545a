/**
 * The log format decision (config, environment, terminal) and the pretty destination. The
 * processes themselves are tested in test/cli/logging.test.ts.
 */
import t from 'tap'
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { LOG_FORMAT_ENV, LogFormatError, exportLogFormat, prettyDestination, resolveLogFormat } from '../../src/control/logger.js'
import type { LogFormat } from '../../src/config/schema.js'

const cfg = (format: LogFormat) => ({ logging: { level: 'info' as const, access_log: false, format } })

t.test('auto: pretty on a terminal, JSON on anything else; json and pretty are taken as said', async (t) => {
  t.equal(resolveLogFormat(cfg('auto'), { env: {}, isTTY: true }), 'pretty')
  t.equal(resolveLogFormat(cfg('auto'), { env: {}, isTTY: false }), 'json')
  t.equal(resolveLogFormat(cfg('json'), { env: {}, isTTY: true }), 'json')
  t.equal(resolveLogFormat(cfg('pretty'), { env: {}, isTTY: false }), 'pretty')
})

t.test('SWITCHYARD_LOG_FORMAT wins over the file; empty is unset; a wrong value is an error that says what is right', async (t) => {
  t.equal(resolveLogFormat(cfg('pretty'), { env: { [LOG_FORMAT_ENV]: 'json' }, isTTY: true }), 'json')
  t.equal(resolveLogFormat(cfg('json'), { env: { [LOG_FORMAT_ENV]: 'pretty' }, isTTY: false }), 'pretty')
  t.equal(resolveLogFormat(cfg('json'), { env: { [LOG_FORMAT_ENV]: 'auto' }, isTTY: true }), 'pretty')
  t.equal(resolveLogFormat(cfg('json'), { env: { [LOG_FORMAT_ENV]: '' }, isTTY: true }), 'json')
  t.throws(() => resolveLogFormat(cfg('auto'), { env: { [LOG_FORMAT_ENV]: 'text' }, isTTY: true }),
    new LogFormatError('text'))
  t.match(new LogFormatError('text').message, 'SWITCHYARD_LOG_FORMAT: expected one of "auto", "json", "pretty", got "text"')
})

t.test('exportLogFormat pins the decision for forked processes', async (t) => {
  const env: NodeJS.ProcessEnv = {}
  exportLogFormat('pretty', env)
  t.equal(resolveLogFormat(cfg('auto'), { env, isTTY: false }), 'pretty', 'a worker whose stdout is no terminal still writes pretty')
})

t.test('the pretty destination writes one readable line per record, synchronously', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-logger-'))
  const file = join(dir, 'out.log')
  const fd = openSync(file, 'w')
  t.teardown(() => closeSync(fd))
  const log = pino({ base: { service: 'switchyard' } }, prettyDestination({ fd, colorize: false }))
  log.child({ sidecar: 'lab' }).warn({ stream: 'stdout', child: { port: 7 } }, 'hello')
  log.child({ worker: 4242 }).info('listening')
  // Read at once: nothing is left in a buffer or another thread.
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '')
  t.equal(lines.length, 2)
  t.match(lines[0], /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: \[sidecar lab\] hello \{"stream":"stdout","child":\{"port":7\}\}$/)
  t.match(lines[1], /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: \[worker 4242\] listening$/)
  t.notOk(lines.join('\n').includes('\u001b['), 'no colors when told so')
})
