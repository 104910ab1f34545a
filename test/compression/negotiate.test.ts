import t from 'tap'
import { MediaTypes, compressible, negotiate, parseAcceptEncoding, type Coding } from '../../src/compression/negotiate.js'

const ALL: Coding[] = ['br', 'zstd', 'gzip']

t.test('parseAcceptEncoding: weights, case, malformed members', async (t) => {
  t.same([...parseAcceptEncoding('gzip, br;q=0.5, ZSTD;Q=0.25, *;q=0')], [['gzip', 1000], ['br', 500], ['zstd', 250], ['*', 0]])
  t.same([...parseAcceptEncoding(' gzip ; q=1.0 , identity ; q=0 ')], [['gzip', 1000], ['identity', 0]], 'whitespace around members and parameters')
  t.same([...parseAcceptEncoding('x-gzip')], [['gzip', 1000]], 'x-gzip is gzip (RFC 9110 section 8.4.1.3)')
  t.same([...parseAcceptEncoding('br;q=1.5, gzip;q=0.1234, zstd;level=3, de flate, , ;q=1, br')], [['br', 1000]], 'a bad qvalue, a foreign parameter, a non-token, empty members: ignored; a later clean br counts')
  t.same([...parseAcceptEncoding('gzip;q=0, gzip')], [['gzip', 0]], 'the first mention of a coding wins')
  t.same([...parseAcceptEncoding('gzip;q=0.')], [['gzip', 0]], '"0." is a valid qvalue')
  t.same([...parseAcceptEncoding('')], [])
})

t.test('negotiate: q-values, ties in route order, * and identity', async (t) => {
  t.equal(negotiate(undefined, ALL), undefined, 'no Accept-Encoding: identity')
  t.equal(negotiate('', ALL), undefined, 'an empty value: identity (RFC 9110 section 12.5.3)')
  t.equal(negotiate('gzip', ALL), 'gzip')
  t.equal(negotiate('gzip, deflate, br, zstd', ALL), 'br', 'equal weights: the route order decides')
  t.equal(negotiate('gzip, deflate, br, zstd', ['gzip', 'br']), 'gzip', 'another route order')
  t.equal(negotiate('br;q=0.5, gzip', ALL), 'gzip', 'a higher weight beats the route order')
  t.equal(negotiate('br;q=0, gzip;q=0', ALL), undefined, 'q=0 refuses')
  t.equal(negotiate('deflate', ALL), undefined, 'nothing we offer')
  t.equal(negotiate('*', ALL), 'br', '* accepts every coding')
  t.equal(negotiate('*;q=0.1, gzip;q=0.5', ALL), 'gzip', 'a named coding beats *')
  t.equal(negotiate('br;q=0, *', ALL), 'zstd', '* does not revive a coding refused by name')
  t.equal(negotiate('*;q=0', ALL), undefined, '*;q=0 refuses every coding not named')
  t.equal(negotiate('identity;q=0', ALL), undefined, 'identity refused and no coding acceptable: identity anyway')
  t.equal(negotiate('gzip, identity;q=0', ALL), 'gzip', 'identity refused: a coding')
  t.equal(negotiate('gzip;q=0.5, identity', ALL), undefined, 'identity preferred by weight')
  t.equal(negotiate('gzip, identity', ALL), 'gzip', 'identity at the same weight: compress')
  t.equal(negotiate('GZIP', ALL), 'gzip', 'case-insensitive')
  t.equal(negotiate('zstd', ['br', 'gzip']), undefined, 'a coding the route (or this Node) does not offer')
})

t.test('compressible: type/subtype, type/*, suffixes, parameters', async (t) => {
  const types = new MediaTypes(['text/*', 'application/json', 'image/svg+xml', 'application/*+xml'])
  t.ok(types.has('text/html; charset=utf-8'))
  t.ok(types.has('TEXT/CSS'))
  t.ok(types.has('application/json'))
  t.ok(types.has(' application/JSON ;charset=utf-8'))
  t.ok(types.has('image/svg+xml'))
  t.ok(types.has('application/atom+xml'), 'a structured suffix')
  t.notOk(types.has('application/xml'), 'the suffix pattern needs a suffix')
  t.notOk(types.has('application/octet-stream'))
  t.notOk(types.has('image/png'))
  t.notOk(types.has(undefined), 'no Content-Type: never')
  t.notOk(types.has('text'), 'not a media type')
  t.notOk(types.has('text/event-stream'), 'event streams are left out of text/*')
  t.ok(compressible('text/event-stream', ['text/event-stream']), 'unless named')
  t.ok(compressible('application/javascript', ['application/javascript']))
  t.notOk(compressible('application/javascript', []))
})
