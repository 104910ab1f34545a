import t from 'tap'
import { LineSplitter } from '../../src/sockets/line-splitter.js'
import { SourceRateLimiter } from '../../src/sockets/udp-server.js'
import { decodeMessage, incompleteUtf8Tail, transformMessage, transformText } from '../../src/sockets/upper.js'

t.test('upper-casing is Unicode-aware and locale-independent', async (t) => {
  t.equal(transformText('hello, world 123', 'upper'), 'HELLO, WORLD 123')
  t.equal(transformText('straße', 'upper'), 'STRASSE', 'ß has no single upper-case letter: full case mapping gives SS')
  t.equal(transformText('ﬁne', 'upper'), 'FINE', 'the fi ligature expands')
  t.equal(transformText('istanbul', 'upper'), 'ISTANBUL', 'no Turkish dotted I whatever the host locale')
  t.equal(transformText('héllo ωμέγα', 'upper'), 'HÉLLO ΩΜΈΓΑ')
  t.equal(transformText('straße', 'echo'), 'straße')
  t.equal(transformMessage(Buffer.from('ΐ'), 'upper').length, 6, 'a 2-byte letter can become 6 bytes')
})

t.test('invalid UTF-8 decodes to U+FFFD instead of failing', async (t) => {
  t.equal(decodeMessage(Buffer.from([0x68, 0xff, 0x69])), 'h\uFFFDi')
  t.equal(decodeMessage(Buffer.from([0x61, 0xe2, 0x82])), 'a\uFFFD', 'a truncated sequence')
  t.same(transformMessage(Buffer.from([0x68, 0xff, 0x69]), 'upper'), Buffer.from('H\uFFFDI'))
  t.equal(decodeMessage(Buffer.from('\uFEFFbom')), '\uFEFFbom', 'a leading BOM is kept, not eaten')
})

t.test('LineSplitter: lines across chunks, CRLF, limits', async (t) => {
  const s = new LineSplitter(5)
  t.same(s.push(Buffer.from('ab')), { lines: [], tooLong: false })
  t.same(s.push(Buffer.from('c\r\nde\nf')).lines.map(String), ['abc', 'de'])
  t.equal(s.pendingBytes, 1)
  t.same(String(s.takePending()), 'f')
  t.equal(s.takePending(), undefined, 'nothing pending any more')
  t.same(s.push(Buffer.from('12345\r\n')).lines.map(String), ['12345'], 'exactly the limit, CR not counted')
  t.equal(s.push(Buffer.from('123456\n')).tooLong, true, 'one over the limit')
  const s2 = new LineSplitter(5)
  t.equal(s2.push(Buffer.from('123456')).tooLong, false, 'six pending bytes could still be 5 + CR')
  t.equal(s2.push(Buffer.from('7')).tooLong, true, 'seven cannot: detected before the newline arrives')
  const s3 = new LineSplitter(5)
  const r = s3.push(Buffer.from('ok\n1234567890\nlater\n'))
  t.same(r.lines.map(String), ['ok'], 'lines before the long one are kept, later ones not looked at')
  t.equal(r.tooLong, true)
  const s4 = new LineSplitter(3)
  s4.push(Buffer.from('abcd'))
  t.equal(s4.takePending(), 'too-long')
})

t.test('incompleteUtf8Tail: the bytes of a character still arriving, and nothing that is already invalid', async (t) => {
  const tail = (...bytes: number[]) => incompleteUtf8Tail(Buffer.from(bytes))
  const euro = [...Buffer.from('€')] // E2 82 AC
  const face = [...Buffer.from('😀')] // F0 9F 98 80
  t.equal(tail(), 0, 'empty')
  t.equal(tail(0x61), 0, 'ASCII')
  t.equal(tail(0x61, ...euro), 0, 'a complete 3-byte character')
  t.equal(tail(0x61, euro[0]), 1, 'a lead byte alone')
  t.equal(tail(0x61, euro[0], euro[1]), 2, 'two of three')
  t.equal(tail(face[0], face[1], face[2]), 3, 'three of four')
  t.equal(tail(...face), 0, 'a complete 4-byte character')
  t.equal(tail(0xc3), 1, 'the lead of a 2-byte character')
  t.equal(tail(0x61, 0xff), 0, 'an invalid byte is not waited for')
  t.equal(tail(0x61, 0xc0), 0, 'C0 can never start a valid sequence')
  t.equal(tail(0x61, 0xf5), 0, 'F5 can never start a valid sequence')
  t.equal(tail(0x61, 0x80), 0, 'a stray continuation byte')
  t.equal(tail(0xc3, 0xa9, 0x80), 0, 'a continuation after a complete character')
  t.equal(tail(0xe0, 0x80), 0, 'E0 80 is an overlong form: invalid already')
  t.equal(tail(0xe0, 0xa0), 2, 'E0 A0 may still become valid')
  t.equal(tail(0xed, 0xa0), 0, 'ED A0 would be a surrogate')
  t.equal(tail(0xf4, 0x90), 0, 'F4 90 is beyond U+10FFFF')
  t.equal(tail(0xf0, 0x8f), 0, 'F0 8F is an overlong form')
})

t.test('LineSplitter.takeFlushable: never splits a character; takePending takes everything', async (t) => {
  const s = new LineSplitter(100)
  s.push(Buffer.from([0x63, 0x61, 0x66, 0xc3])) // 'caf' and the first byte of 'é'
  t.same(s.takeFlushable(), Buffer.from('caf'), 'the complete part')
  t.equal(s.pendingBytes, 1, 'the partial character stays')
  t.equal(s.takeFlushable(), undefined, 'a partial character alone is not a message')
  t.equal(s.pendingBytes, 1)
  t.same(s.push(Buffer.from([0xa9, 0x21, 0x0a])).lines.map(String), ['é!'], 'completed by the next bytes')
  s.push(Buffer.from([0x68, 0xff]))
  t.same(s.takeFlushable(), Buffer.from([0x68, 0xff]), 'invalid bytes are not held back')
  s.push(Buffer.from([0x61, 0xe2, 0x82]))
  t.same(s.takePending(), Buffer.from([0x61, 0xe2, 0x82]), 'takePending (the peer closed) takes a truncated character too')
  s.push(Buffer.from('ok\r'))
  t.same(s.takeFlushable(), Buffer.from('ok'), 'a trailing CR is still stripped when nothing is held')
})

t.test('SourceRateLimiter: burst, refill, bounded memory', async (t) => {
  let now = 0
  const rl = new SourceRateLimiter({ ratePerSecond: 2, burst: 3, maxSources: 2 }, () => now)
  t.same([1, 2, 3, 4].map(() => rl.allow('a')), [true, true, true, false], 'the burst, then dropped')
  now = 500
  t.equal(rl.allow('a'), true, 'half a second at 2/s refills one token')
  t.equal(rl.allow('a'), false)
  now = 100000
  t.same([1, 2, 3, 4].map(() => rl.allow('a')), [true, true, true, false], 'refill never exceeds the burst')
  t.equal(rl.allow('b'), true)
  t.equal(rl.allow('c'), true)
  t.equal(rl.size, 2, 'the least recently seen source was forgotten')
  t.equal(rl.allow('a'), true, 'a forgotten source starts again with a full bucket')
})
