import t from 'tap'
import { normalizePath } from '../../src/routing/normalize-path.js'

const ok = (raw: string): string => {
  const r = normalizePath(raw)
  if (!r.ok) throw new Error(`${raw} rejected: ${r.reason}`)
  return r.path
}
const bad = (raw: string): string => {
  const r = normalizePath(raw)
  if (r.ok) throw new Error(`${raw} accepted as ${r.path}`)
  return r.reason
}

t.test('normal paths pass through unchanged', async (t) => {
  for (const p of ['/', '/a/b', '/a-b_c~d.e', '/x;y=1', '/@user:1']) t.equal(ok(p), p)
})

t.test('dot segments, duplicate slashes, unreserved escapes', async (t) => {
  t.equal(ok('/a/./b/../c'), '/a/c')
  t.equal(ok('/a//b///c'), '/a/b/c')
  t.equal(ok('/a/%2e%2E/b'), '/b', 'encoded dots are decoded before dot-segment removal')
  t.equal(ok('/%41%7e'), '/A~')
  t.equal(ok('/a/b/..'), '/a/')
  t.equal(ok('/%252e%252e/x'), '/%252e%252e/x'.replace(/%252e/g, '%252e'), 'decoded at most once')
  t.equal(ok('/caf\u00e9'), '/caf%C3%A9')
  t.equal(ok('/a%c3%a9'), '/a%C3%A9')
  t.equal(ok('/a b'.replace(' ', '"')), '/a%22b')
})

t.test('rejected: traversal above root, encoded separators, controls, bad escapes', async (t) => {
  t.equal(bad('/../etc/passwd'), 'path climbs above the root')
  t.equal(bad('/a/%2e%2e/%2e%2e/x'), 'path climbs above the root')
  t.equal(bad('/a%2fb'), 'encoded slash or backslash in path')
  t.equal(bad('/a%5Cb'), 'encoded slash or backslash in path')
  t.equal(bad('/a\\b'), 'backslash in path')
  t.equal(bad('/a%00b'), 'control character in path')
  t.equal(bad('/a\u0001b'), 'control character in path')
  t.equal(bad('/a%zz'), 'malformed percent-encoding')
  t.equal(bad('/a%ff'), 'percent-encoding is not valid UTF-8')
  t.equal(bad('a'), 'path must start with /')
})
