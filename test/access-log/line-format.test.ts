/** The line formats on plain records (no sockets): field order, escaping, absent values, time text. */
import t from 'tap'
import { emptyRecord, type AccessRecord } from '../../src/access-log/access-record.js'
import { createLineFormatter, textField } from '../../src/access-log/line-format.js'
import { compileRouteAccessLog, globalCapture } from '../../src/access-log/header-capture.js'
import { parseConfig } from '../../src/config/load.js'
import { AccessLog } from '../../src/access-log/access-log.js'

const REDACT = new Set(['authorization', 'cookie', 'set-cookie', 'proxy-authorization'])
// 2026-12-03T09:30:19.007Z
const WHEN = Date.UTC(2026, 11, 3, 9, 30, 19, 7)

function record(over: Partial<AccessRecord> = {}): AccessRecord {
  return Object.assign(emptyRecord(), {
    time: WHEN,
    client: '10.0.0.7',
    method: 'GET',
    target: '/p?q=1',
    protocol: 'HTTP/2.0',
    status: 200,
    bytesOut: 512,
    durationMs: 12.3456,
    requestHeaders: { referer: 'https://a.test/', 'user-agent': 'curl/8.5.0' }
  }, over)
}

t.test('combined: the nginx fields in order, "-" for the absent ones', async (t) => {
  const line = createLineFormatter('combined')(record(), REDACT)
  t.match(line, /^10\.0\.0\.7 - - \[03\/Dec\/2026:\d\d:30:19 [+-]\d{4}\] "GET \/p\?q=1 HTTP\/2\.0" 200 512 "https:\/\/a\.test\/" "curl\/8\.5\.0"\n$/)
  const bare = createLineFormatter('combined')(record({ requestHeaders: {}, user: 'alice' }), REDACT)
  t.match(bare, / - alice \[.*\] "GET \/p\?q=1 HTTP\/2\.0" 200 512 "-" "-"\n$/)
})

t.test('combined: time in the process\'s zone, as $time_local', async (t) => {
  const d = new Date(WHEN)
  const off = -d.getTimezoneOffset()
  const zone = `${off < 0 ? '-' : '+'}${String(Math.floor(Math.abs(off) / 60)).padStart(2, '0')}${String(Math.abs(off) % 60).padStart(2, '0')}`
  const line = createLineFormatter('combined')(record(), REDACT)
  t.ok(line.includes(`[${String(d.getDate()).padStart(2, '0')}/Dec/2026:${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}:19 ${zone}]`), line)
})

t.test('escaping: quotes, backslashes, control and non-ASCII bytes as \\xHH (a line cannot be forged)', async (t) => {
  t.equal(textField('a"b\\c'), 'a\\x22b\\x5Cc')
  t.equal(textField('x\ny\tz'), 'x\\x0Ay\\x09z')
  t.equal(textField('caf\u00e9'), 'caf\\xE9')
  t.equal(textField('\u20ac'), '\\xE2\\x82\\xAC')
  t.equal(textField(''), '-')
  t.equal(textField(undefined), '-')
  const line = createLineFormatter('combined')(record({ target: '/x" 200 1 "-" "evil\n127.0.0.1 - - [' }), REDACT)
  t.equal(line.split('\n').length, 2, 'one line, whatever the target holds')
})

t.test('extended: combined plus key="value" fields; captured headers redacted', async (t) => {
  const capture = { request: ['authorization', 'x-a'], response: ['set-cookie', 'x-b'] }
  const line = createLineFormatter('extended')(record({
    requestId: 'r1', route: 'api', pool: 'p', member: 'm', variant: 'v2', cache: 'HIT', bytesIn: 3, upstreamMs: 1.23456, firewall: 'allow', anonymous: true, capture,
    requestHeaders: { authorization: 'Bearer x', 'x-a': ['1', '2'] },
    responseHeaders: { 'set-cookie': ['a=1', 'b=2'], 'x-b': 7 }
  }), REDACT)
  t.match(line, /" request_id="r1" route="api" pool="p" member="m" variant="v2" cache="HIT" bytes_in=3 duration_ms=12\.346 upstream_ms=1\.235 firewall="allow" anonymous=1 req\.authorization="\[redacted\]" req\.x-a="1, 2" res\.set-cookie="\[redacted\]" res\.x-b="7"\n$/)
})

t.test('json: every field, null when absent, valid JSON for any input', async (t) => {
  const fmt = createLineFormatter('json')
  const line = fmt(record({ target: '/\u0000"\\', capture: { request: ['x-a', 'cookie', 'x-missing'], response: [] }, requestHeaders: { 'x-a': 'v', cookie: 'c' } }), REDACT)
  t.ok(line.endsWith('}\n'))
  const o = JSON.parse(line) as Record<string, unknown>
  t.same(Object.keys(o), ['time', 'client', 'user', 'method', 'target', 'protocol', 'status', 'bytes_in', 'bytes_out', 'duration_ms', 'upstream_ms', 'route', 'pool', 'member', 'variant', 'cache', 'request_id', 'firewall', 'anonymous', 'upgrade', 'referer', 'user_agent', 'request_headers'])
  t.match(o, { time: '2026-12-03T09:30:19.007Z', target: '/\u0000"\\', user: null, upstream_ms: null, duration_ms: 12.346, anonymous: false, request_headers: { 'x-a': 'v', cookie: '[redacted]' } })
  t.notOk('x-missing' in (o.request_headers as object), 'a header the request lacks is left out')
  const later = JSON.parse(fmt(record({ time: WHEN + 1000 }), REDACT)) as { time: string }
  t.equal(later.time, '2026-12-03T09:30:20.007Z', 'the cached second moves on')
})

t.test('config: logging.access_log: true still loads (the old boolean), with the defaults', async (t) => {
  const base = 'pools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }\nroutes: [{ name: r, match: {}, pool: p, access_log: false }]\n'
  const on = parseConfig(`logging: { access_log: true }\n${base}`, 'test.yaml')
  t.match(on.logging.access_log, { enabled: true, format: 'json', headers: { request: [], response: [] }, redact: ['authorization', 'proxy-authorization', 'cookie', 'set-cookie'] })
  t.equal(on.routes[0].access_log?.enabled, false, 'a route\'s access_log: false is {enabled: false}')
  const off = parseConfig(base, 'test.yaml')
  t.equal(off.logging.access_log.enabled, false, 'off by default')
  const rel = parseConfig(`logging: { access_log: { enabled: true, path: logs/a.log } }\n${base}`, '/etc/switchyard/upstreams.yaml')
  t.equal(rel.logging.access_log.path, '/etc/switchyard/logs/a.log', 'a relative path is read from the config file\'s folder')
  t.throws(() => parseConfig(`logging: { access_log: { enabled: true, format: common } }\n${base}`, 'test.yaml'), /access_log\.format/)
  t.throws(() => parseConfig(`logging: { access_log: { headers: { request: ["bad name"] } } }\n${base}`, 'test.yaml'), /access_log\.headers\.request/)
})

t.test('capture lists: a route adds to the global lists (lower case, once each); without a block it carries nothing', async (t) => {
  const cfg = parseConfig('logging: { access_log: { enabled: true, headers: { request: [X-A] } } }\npools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }\nroutes: [{ name: r, match: {}, pool: p, access_log: { headers: { request: [x-a, X-B], response: [ETag] } } }]\n', 'test.yaml')
  const shared = globalCapture(cfg.logging.access_log)
  t.same(shared, { request: ['x-a'], response: [] })
  t.same(compileRouteAccessLog(cfg.logging.access_log, cfg.routes[0].access_log, shared), { enabled: true, capture: { request: ['x-a', 'x-b'], response: ['etag'] } })
  t.equal(compileRouteAccessLog(cfg.logging.access_log, undefined, shared), undefined)
})

t.test('AccessLog.write: a caller-filled line (the forward proxy\'s tunnels) starts from an empty record', async (t) => {
  const lines: string[] = []
  const log = new AccessLog(parseConfig('logging: { access_log: { enabled: true } }\npools: { p: { members: [{ url: "http://127.0.0.1:1" }] } }\nroutes: [{ name: r, match: {}, pool: p }]\n', 'test.yaml').logging.access_log, { write: (l) => lines.push(l), reopen: () => undefined, close: async () => undefined })
  log.write((r) => { r.method = 'CONNECT'; r.target = 'a.test:443'; r.status = 200; r.route = 'fwd'; r.user = 'alice' })
  log.write((r) => { r.method = 'CONNECT'; r.target = 'b.test:443'; r.status = 403 })
  const [a, b] = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(a, { method: 'CONNECT', target: 'a.test:443', route: 'fwd', user: 'alice', status: 200 })
  t.match(b, { target: 'b.test:443', status: 403, route: null, user: null })
  t.type(b.time, 'string')
})
