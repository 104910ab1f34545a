import t from 'tap'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import type { FastifyBaseLogger } from 'fastify'
import { lazyChildLogger } from '../../src/listeners/lazy-child-logger.js'

function capture(level: string): { log: FastifyBaseLogger; lines: Array<Record<string, unknown>>; children: () => number } {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done() } })
  const log = pino({ level }, sink) as unknown as FastifyBaseLogger
  let made = 0
  const child = log.child.bind(log)
  ;(log as { child: unknown }).child = (b: Record<string, unknown>, o?: Record<string, unknown>) => { made++; return child(b, o) }
  return { log, lines, children: () => made }
}

t.test('the per-request logger is made only when a line is written, and carries reqId', async (t) => {
  const c = capture('warn')
  const l = lazyChildLogger.call(undefined, c.log, { reqId: 'r-1' }, {})
  l.info({ a: 1 }, 'below the level')
  l.debug('below the level')
  t.equal(c.children(), 0, 'no pino child for lines the level drops')
  t.equal((l as unknown as { isLevelEnabled(level: string): boolean }).isLevelEnabled('info'), false)
  l.warn({ a: 2 }, 'kept')
  l.error('kept too')
  t.equal(c.children(), 1, 'one child, made on the first line written')
  await new Promise((resolve) => setImmediate(resolve))
  t.same(c.lines.map((x) => [x.reqId, x.msg]), [['r-1', 'kept'], ['r-1', 'kept too']])
})

t.test('a per-route level is honoured', async (t) => {
  const c = capture('warn')
  const l = lazyChildLogger.call(undefined, c.log, { reqId: 'r-2' }, { level: 'info' })
  l.info('route logs at info')
  await new Promise((resolve) => setImmediate(resolve))
  t.same(c.lines.map((x) => [x.reqId, x.msg]), [['r-2', 'route logs at info']])
})
