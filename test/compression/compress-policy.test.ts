import t from 'tap'
import type { OutgoingHttpHeaders } from 'node:http'
import { PASS, VARY, addVary, applyCoding, compileCompressPolicy, notModifiedForCoding, weakEtag } from '../../src/compression/compress-policy.js'
import { availableCodings } from '../../src/compression/encoder.js'
import type { RouteCompressConfig } from '../../src/config/schema.js'

const CFG: RouteCompressConfig = {
  enabled: true,
  encodings: ['br', 'zstd', 'gzip'],
  types: ['text/*', 'application/json'],
  min_bytes: 100,
  brotli_quality: 4,
  gzip_level: 6,
  zstd_level: 3
}

t.test('compileCompressPolicy: off, codings this Node has', async (t) => {
  t.equal(compileCompressPolicy(undefined), undefined)
  t.equal(compileCompressPolicy({ ...CFG, enabled: false }), undefined)
  const p = compileCompressPolicy(CFG)
  t.same(p?.encodings, availableCodings().has('zstd') ? ['br', 'zstd', 'gzip'] : ['br', 'gzip'])
  const zstdOnly = compileCompressPolicy({ ...CFG, encodings: ['zstd'] })
  t.equal(zstdOnly === undefined, !availableCodings().has('zstd'), 'zstd only, on a Node without zstd: no compression')
})

t.test('decide: status, coding, type, no-transform, size', async (t) => {
  const p = compileCompressPolicy(CFG)
  if (p === undefined) throw new Error('policy expected')
  const h = (extra: OutgoingHttpHeaders = {}): OutgoingHttpHeaders => ({ 'content-type': 'text/html', 'content-length': '5000', ...extra })
  t.equal(p.decide(200, h(), 'gzip'), 'gzip')
  t.equal(p.decide(200, h(), undefined), VARY, 'no Accept-Encoding: as it is, but it varies')
  t.equal(p.decide(200, h(), 'identity'), VARY)
  t.equal(p.decide(203, h(), 'br'), 'br', 'other 2xx with content')
  for (const s of [101, 204, 206, 301, 304, 404, 500]) t.equal(p.decide(s, h(), 'gzip'), PASS, `status ${s}`)
  t.equal(p.decide(200, h({ 'content-encoding': 'gzip' }), 'br'), PASS, 'already encoded')
  t.equal(p.decide(200, h({ 'content-encoding': 'identity' }), 'br'), 'br', 'identity is no coding')
  t.equal(p.decide(200, h({ 'content-type': 'image/png' }), 'br'), PASS, 'not a listed type')
  t.equal(p.decide(200, h({ 'cache-control': 'public, No-Transform' }), 'br'), PASS, 'no-transform')
  t.equal(p.decide(200, h({ 'cache-control': 'no-transformer' }), 'br'), 'br', 'only the directive itself')
  t.equal(p.decide(200, h({ 'content-length': 99 }), 'br'), PASS, 'below min_bytes')
  t.equal(p.decide(200, h({ 'content-length': 100 }), 'br'), 'br', 'at min_bytes')
  const unknown = h()
  delete unknown['content-length']
  t.equal(p.decide(200, unknown, 'br'), 'br', 'unknown length: compress')
  const zero = compileCompressPolicy({ ...CFG, min_bytes: 0 })
  t.equal(zero?.decide(200, h({ 'content-length': 0 }), 'br'), PASS, 'an empty body never')
})

t.test('header changes: Vary merge, weak ETag, length and ranges dropped', async (t) => {
  const v = (vary?: string | string[]): unknown => {
    const h = (vary === undefined ? {} : { vary }) as OutgoingHttpHeaders
    addVary(h)
    return h.vary
  }
  t.equal(v(), 'Accept-Encoding')
  t.equal(v('Origin'), 'Origin, Accept-Encoding')
  t.equal(v('origin, accept-encoding'), 'origin, accept-encoding', 'never twice')
  t.equal(v('*'), '*', 'never beside *')
  t.equal(v(['Origin', 'Accept']), 'Origin, Accept, Accept-Encoding', 'several field lines')
  t.equal(weakEtag('"abc"'), 'W/"abc"')
  t.equal(weakEtag('W/"abc"'), 'W/"abc"')
  const h: OutgoingHttpHeaders = { 'content-length': 5000, etag: '"v1"', 'accept-ranges': 'bytes', 'content-digest': 'sha-256=:x:', vary: 'Origin' }
  applyCoding(h, 'br')
  t.same(h, { etag: 'W/"v1"', vary: 'Origin, Accept-Encoding', 'content-encoding': 'br' })
})

t.test('notModifiedForCoding: a 304 to a client holding our encoded answer', async (t) => {
  const p = compileCompressPolicy(CFG)
  if (p === undefined) throw new Error('policy expected')
  const h: OutgoingHttpHeaders = { etag: '"v1"' }
  notModifiedForCoding(p, h, 'W/"v1"', 'gzip')
  t.same(h, { etag: 'W/"v1"', vary: 'Accept-Encoding' })
  const strong: OutgoingHttpHeaders = { etag: '"v1"' }
  notModifiedForCoding(p, strong, '"v1"', 'gzip')
  t.same(strong, { etag: '"v1"' }, 'validated with the strong tag: the identity answer')
  const identity: OutgoingHttpHeaders = { etag: '"v1"' }
  notModifiedForCoding(p, identity, 'W/"v1"', undefined)
  t.same(identity, { etag: '"v1"' }, 'a client that negotiates no coding')
})
