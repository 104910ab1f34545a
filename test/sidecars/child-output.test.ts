/**
 * A sidecar's output in the proxy's log: JSON lines embedded as objects at the child's level,
 * text lines as text, long lines cut with a bound. The last test runs real child processes
 * under the Supervisor.
 */
import t from 'tap'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { Registry } from 'prom-client'
import { parseConfig } from '../../src/config/load.js'
import { LineCutter, MAX_LINE_BYTES, childLevel, parseObjectLine, relayLine } from '../../src/sidecars/child-output.js'
import { Supervisor } from '../../src/sidecars/supervisor.js'
import { waitFor } from '../fixtures/proxy.js'

type Rec = Record<string, unknown> & { level: number; msg?: string }

/** A trace-level JSON logger whose records land in `records`. */
function capture(): { log: Logger; records: Rec[] } {
  const records: Rec[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') records.push(JSON.parse(l) as Rec)
      cb()
    }
  })
  return { log: pino({ level: 'trace' }, stream), records }
}

function cut(chunks: (string | Buffer)[], max: number, end = false): [string, boolean][] {
  const out: [string, boolean][] = []
  const c = new LineCutter((line, truncated) => out.push([line, truncated]), max)
  for (const ch of chunks) c.push(typeof ch === 'string' ? Buffer.from(ch) : ch)
  if (end) c.end()
  return out
}

t.test('LineCutter: lines across chunks, CRLF (also split), a last line at end', async (t) => {
  t.same(cut(['a\nb', 'c\r', '\nd\r\n', 'tail'], 100), [['a', false], ['bc', false], ['d', false]])
  t.same(cut(['a\nb', 'c\r', '\nd\r\n', 'tail'], 100, true), [['a', false], ['bc', false], ['d', false], ['tail', false]])
  t.same(cut(['\n\n'], 100), [['', false], ['', false]], 'empty lines are lines')
})

t.test('LineCutter: a long line is cut at the bound and the rest of it dropped, then lines go on', async (t) => {
  t.same(cut(['0123456789abc\nnext\n'], 10), [['0123456789', true], ['next', false]])
  // Without a newline for a long while: the head is out at once, nothing more is held.
  t.same(cut(['01234', '56789x', 'yyyyyyyy', 'yyy\nok\n'], 10), [['0123456789', true], ['ok', false]])
  t.same(cut(['0123456789\n'], 10), [['0123456789', false]], 'exactly the bound is whole')
  t.same(cut(['0123456789\r\n'], 10), [['0123456789', false]], 'the CR of CRLF does not count')
})

t.test('LineCutter: a cut never splits a UTF-8 character', async (t) => {
  // "aé€😀" is 1 + 2 + 3 + 4 bytes.
  const s = 'aé€😀'
  for (let max = 1; max < 10; max++) {
    const [[line, truncated]] = cut([s + '\n'], max)
    t.ok(truncated)
    t.notMatch(line, /\uFFFD/, `max ${max}: no replacement character`)
    t.ok(s.startsWith(line), `max ${max}: ${JSON.stringify(line)} is a prefix`)
    t.ok(Buffer.byteLength(line) <= max)
  }
})

t.test('parseObjectLine: objects only', async (t) => {
  t.same(parseObjectLine('{"a":1}'), { a: 1 })
  t.same(parseObjectLine('  {"a":1}  '), { a: 1 })
  t.equal(parseObjectLine('[1,2]'), undefined)
  t.equal(parseObjectLine('42'), undefined)
  t.equal(parseObjectLine('"{}"'), undefined)
  t.equal(parseObjectLine('{not json}'), undefined)
  t.equal(parseObjectLine('listening on {port}'), undefined)
})

t.test('childLevel: pino numbers, names of other loggers, severity; info otherwise', async (t) => {
  t.same([10, 20, 30, 40, 50, 60, 35].map((level) => childLevel({ level })), ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'info'])
  t.same(['DEBUG', 'warning', 'ERR', 'critical', 'panic', 'Info'].map((level) => childLevel({ level })), ['debug', 'warn', 'error', 'fatal', 'fatal', 'info'])
  t.equal(childLevel({ severity: 'ERROR' }), 'error', 'Google Cloud severity')
  t.equal(childLevel({ level: 'verbose' }), 'info', 'an unknown name')
  t.equal(childLevel({ msg: 'x' }), 'info', 'no level')
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) t.equal(childLevel({ level: name }), 'info', `"${name}" is not a level (no prototype lookup)`)
  t.equal(childLevel({ severity: '__proto__' }), 'info')
})

t.test('relayLine: an object is embedded with its level and msg; text stays text; a cut line is text', async (t) => {
  const { log, records } = capture()
  relayLine(log, 'stdout', '{"level":50,"msg":"db down","retry_in_ms":500}', false)
  relayLine(log, 'stderr', '{"level":"warning","message":"slow","took_ms":900}', false)
  relayLine(log, 'stdout', '{"event":"tick"}', false)
  relayLine(log, 'stdout', 'plain {"not":"embedded"} text', false)
  relayLine(log, 'stdout', '{"level":30,"msg":"cut her', true)
  t.match(records[0], { level: 50, msg: 'db down', stream: 'stdout', child: { level: 50, msg: 'db down', retry_in_ms: 500 } })
  t.match(records[1], { level: 40, msg: 'slow', stream: 'stderr', child: { took_ms: 900 } })
  t.match(records[2], { level: 30, child: { event: 'tick' } })
  t.notOk('msg' in records[2], 'no msg when the child had none')
  t.match(records[3], { level: 30, msg: 'plain {"not":"embedded"} text' })
  t.notOk('child' in records[3])
  t.match(records[4], { level: 30, msg: '{"level":30,"msg":"cut her', truncated: true })
  t.notOk('child' in records[4])
})

t.test('Supervisor: a real child\'s JSON lines arrive as objects, text as text, a newline-less flood bounded', async (t) => {
  const script = [
    'console.log(JSON.stringify({ level: 30, msg: "ready", port: 7 }))',
    'console.log("plain text")',
    // Names of Object.prototype members once crashed the relay (and the process).
    'console.log(JSON.stringify({ level: "constructor", msg: "proto" }))',
    'console.error(JSON.stringify({ level: 50, msg: "on stderr" }))',
    'process.stdout.write("\\r\\n".padStart(3, "x"))',
    // 3 MiB without a newline, then a newline and one more line.
    `process.stdout.write("y".repeat(3 * 1024 * 1024), () => process.stdout.write("\\n" + JSON.stringify({ level: 40, msg: "after" }) + "\\n"))`,
    'setInterval(() => {}, 1e9)'
  ].join(';')
  const config = parseConfig(`
pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }
routes: []
sidecars:
  - { name: js, command: ${JSON.stringify(process.execPath)}, args: ["-e", ${JSON.stringify(script)}] }
`, 'sc.yaml', {})
  const { log, records } = capture()
  const sup = new Supervisor(config.sidecars, log, new Registry())
  t.teardown(() => sup.stop())
  sup.start()
  await sup.spawned()
  await waitFor(() => records.some((r) => r.msg === 'after'), 10000, 'the line after the flood')
  const out = records.filter((r) => r.sidecar === 'js' && 'stream' in r)
  t.match(out[0], { level: 30, msg: 'ready', stream: 'stdout', child: { level: 30, msg: 'ready', port: 7 } })
  t.match(out[1], { level: 30, msg: 'plain text', stream: 'stdout' })
  t.notOk('child' in out[1])
  t.match(out[2], { level: 30, msg: 'proto', child: { level: 'constructor' } }, 'a level named like a prototype member is info')
  out.splice(2, 1)
  const err = out.find((r) => r.stream === 'stderr')
  t.match(err, { level: 50, msg: 'on stderr', child: { msg: 'on stderr' } })
  const stdout = out.filter((r) => r.stream === 'stdout')
  t.match(stdout[2], { msg: 'x' }, 'CRLF line without its CR')
  t.match(stdout[3], { truncated: true })
  t.equal((stdout[3].msg as string).length, MAX_LINE_BYTES, 'the flood is cut at the bound')
  t.match(stdout[4], { level: 40, msg: 'after', child: { msg: 'after' } }, 'and the next line is whole')
  t.equal(stdout.length, 5, 'nothing else of the flood')
})
