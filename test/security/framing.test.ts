/**
 * Message framing at the edge (RFC 9112 sections 2.2, 5, 6, 7 and 11): exact bytes over
 * node:net to a real proxy in front of a real upstream. A request whose framing two parsers
 * could read differently is refused with 400 and the connection is closed, before anything
 * reaches the upstream; nothing is cached. A malformed upstream response becomes 502 (or a cut
 * connection once the head was sent), its connection is discarded, and nothing is cached.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText, waitFor } from '../fixtures/proxy.js'
import { countBytes, proxyFor, sendRaw, startRawUpstream, targetOf, type TapTest, type Teardown } from '../fixtures/security.js'

interface Seen { url: string; complete: boolean; closed: boolean; body: number; raw: string[] }

/** An upstream that records each request's fate, a byte counter, and a proxy with a caching route. */
async function setup(t: Teardown) {
  const seen: Seen[] = []
  const up = await startUpstream('u', (req, res) => {
    const s: Seen = { url: req.url ?? '', complete: false, closed: false, body: 0, raw: req.rawHeaders }
    seen.push(s)
    req.on('data', (d: Buffer) => { s.body += d.length })
    req.on('end', () => {
      s.complete = true
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'public, max-age=60' })
      res.end(`ok ${req.method} ${req.url} ${s.body}`)
    })
    req.on('close', () => { s.closed = true })
  })
  const bytes = countBytes(up)
  t.teardown(() => up.close())
  const proxy = await proxyFor(t, `
pools: { p: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: cached, match: { path_prefix: /c }, pool: p, cache: { enabled: true } }
  - { name: plain, match: {}, pool: p }
`)
  return { up, seen, bytes, proxy }
}
type Setup = Awaited<ReturnType<typeof setup>>

const crlf = (...lines: string[]): string => lines.join('\r\n')

/**
 * Asserts the edge refused `bytes`: 400, connection closed, nothing reached the upstream (not
 * one byte), no embedded request was ever seen upstream, and a clean GET of the same target
 * afterwards is not a cache HIT.
 */
async function expectRefused(t: TapTest, s: Setup, name: string, bytes: string, target: string, opts: { todo?: string } = {}): Promise<void> {
  const before = { bytes: s.bytes.bytes, hits: s.up.hits }
  const r = await sendRaw(s.proxy.url, bytes, { responses: 1 })
  const o = opts.todo === undefined ? {} : { todo: opts.todo }
  t.equal(r.status, 400, `${name}: 400`, o)
  t.ok(r.closedByServer, `${name}: the proxy closed the connection`)
  t.equal(r.responses.length, r.status === 0 ? 0 : 1, `${name}: exactly one response`)
  t.equal(s.bytes.bytes - before.bytes, 0, `${name}: the upstream received 0 bytes`, o)
  t.equal(s.up.hits - before.hits, 0, `${name}: no request at the upstream`, o)
  t.notMatch(s.bytes.text, /smuggled/, `${name}: no embedded request ever reached the upstream`, o)
  const follow = await fetchText(`${s.proxy.url}${target}`, { headers: { host: 'a.test' } })
  t.equal(follow.status, 200, `${name}: a clean GET of ${target} is served`)
  t.not(follow.headers['x-cache'], 'HIT', `${name}: and it is not a cache HIT: nothing was stored`)
}

t.test('ambiguous or malformed request framing: 400, closed, 0 bytes upstream, nothing cached', async (t) => {
  const s = await setup(t)
  let n = 0
  // Each case gets its own target /c/<n> and embeds (where it smuggles) a request for /c/<n>/smuggled.
  const cases: [string, (p: string) => string][] = [
    ['Content-Length + Transfer-Encoding', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 5', 'Transfer-Encoding: chunked', '', '0', '', '')],
    ['two Content-Length, same value', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 3', 'Content-Length: 3', '', 'abc')],
    ['two Content-Length, different values', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 3', 'Content-Length: 40', '', `abcGET ${p}/smuggled HTTP/1.1`, 'Host: a.test', '', '')],
    ['Content-Length list "3, 3"', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 3, 3', '', 'abc')],
    ['Content-Length: 1a', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 1a', '', 'a')],
    ['Content-Length: -1', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: -1', '', '')],
    ['Content-Length: +5', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: +5', '', 'abcde')],
    ['Content-Length: 0x5', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 0x5', '', 'abcde')],
    ['Content-Length: 5.0', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 5.0', '', 'abcde')],
    ['Content-Length empty', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: ', '', '')],
    ['Content-Length over 2^64', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 99999999999999999999999', '', 'abc')],
    ['Transfer-Encoding: chunked, identity', (p) => crlf(`POST ${p} HTTP/1.1`, 'Host: a.test', 'Transfer-Encoding: chunked, identity', '', '3', 'abc', '0', '', '')],
    ['Transfer-Encoding: xchunked', (p) => crlf(`POST ${p} HTTP/1.1`, 'Host: a.test', 'Transfer-Encoding: xchunked', '', '3', 'abc', '0', '', '')],
    ['Transfer-Encoding: identity', (p) => crlf(`POST ${p} HTTP/1.1`, 'Host: a.test', 'Transfer-Encoding: identity', '', 'abc')],
    ['Transfer-Encoding: chunked, chunked', (p) => crlf(`POST ${p} HTTP/1.1`, 'Host: a.test', 'Transfer-Encoding: chunked, chunked', '', '3', 'abc', '0', '', '')],
    ['TE.TE: chunked then identity in two fields', (p) => crlf(`POST ${p} HTTP/1.1`, 'Host: a.test', 'Transfer-Encoding: chunked', 'Transfer-Encoding: identity', '', '3', 'abc', '0', '', '')],
    ['TE.TE: space before the colon', (p) => crlf(`POST ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 4', 'Transfer-Encoding : chunked', '', '0', '', '')],
    ['TE.TE: value folded onto the next line', (p) => crlf(`POST ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 4', 'Transfer-Encoding:', ' chunked', '', '0', '', '')],
    ['TE.TE: the field line starts with a space', (p) => crlf(`POST ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 4', ' Transfer-Encoding: chunked', '', '0', '', '')],
    ['TE.TE: vertical tab before the value', (p) => crlf(`POST ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 4', 'Transfer-Encoding:\x0bchunked', '', '0', '', '')],
    ['TE.TE: bare LF hides the field', (p) => `POST ${p} HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nX: y\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    ['CL.TE smuggle', (p) => crlf(`POST ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 44', 'Transfer-Encoding: chunked', '', '0', '', `GET ${p}/smuggled HTTP/1.1`, 'Host: a.test', '', '')],
    ['TE.CL smuggle', (p) => crlf(`POST ${p} HTTP/1.1`, 'Host: a.test', 'Content-Length: 4', 'Transfer-Encoding: chunked', '', '2c', `GET ${p}/smuggled HTTP/1.1`, 'Host: a.test', '', '0', '', '')],
    ['obs-fold (continuation line starting with a space)', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'X-A: 1', ' folded', '', '')],
    ['obs-fold (continuation line starting with a tab)', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'X-A: 1', '\tfolded', '', '')],
    ['first field line starts with a space', (p) => crlf(`GET ${p} HTTP/1.1`, ' Host: a.test', '', '')],
    ['bare CR ends the request line', (p) => `GET ${p} HTTP/1.1\rHost: a.test\r\n\r\n`],
    ['bare CR inside a field line', (p) => `GET ${p} HTTP/1.1\r\nHost: a.test\r\nX-A: 1\rX-B: 2\r\n\r\n`],
    ['bare LF line endings throughout', (p) => `GET ${p} HTTP/1.1\nHost: a.test\n\n`],
    ['bare LF after one field line', (p) => `GET ${p} HTTP/1.1\r\nHost: a.test\nX-A: 1\r\n\r\n`],
    ['NUL in a field value', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'X-A: a\x00b', '', '')],
    ['control character (0x01) in a field value', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'X-A: a\x01b', '', '')],
    ['DEL in a field value', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'X-A: a\x7fb', '', '')],
    ['space inside a field name', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'X A: b', '', '')],
    ['NUL in a field name', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'X\x00A: b', '', '')],
    ['field line without a colon', (p) => crlf(`GET ${p} HTTP/1.1`, 'Host: a.test', 'Transfer-Encoding chunked', '', '')],
    ['HTTP version 1.10', (p) => crlf(`GET ${p} HTTP/1.10`, 'Host: a.test', '', '')],
    ['lower-case protocol name', (p) => crlf(`GET ${p} http/1.1`, 'Host: a.test', '', '')]
  ]
  for (const [name, make] of cases) {
    const target = `/c/${++n}`
    await expectRefused(t, s, name, make(target), target)
  }
  // Only HTTP/1.0 and HTTP/1.1 request lines (RFC 9112 section 3; 505 for other versions).
  const versionTodo = {}
  const versions: [string, string, { todo?: string }?][] = [
    ['request line without a version, a space after the target', 'GET /c/v0 \r\nHost: a.test\r\nX-A: 1\r\n\r\n'],
    ['request line without a version (HTTP/0.9 style)', 'GET /c/v1\r\nHost: a.test\r\n\r\n', versionTodo],
    ['HTTP/0.9', 'GET /c/v2 HTTP/0.9\r\nHost: a.test\r\n\r\n', versionTodo],
    ['HTTP/2.0 in HTTP/1 syntax', 'GET /c/v3 HTTP/2.0\r\nHost: a.test\r\n\r\n', versionTodo],
    ['HTTP/1.9', 'GET /c/v4 HTTP/1.9\r\nHost: a.test\r\n\r\n'],
    ['HTTP/3.0', 'GET /c/v5 HTTP/3.0\r\nHost: a.test\r\n\r\n']
  ]
  for (const [name, bytes, todo] of versions) {
    const before = s.up.hits
    const r = await sendRaw(s.proxy.url, bytes, { responses: 1 })
    t.ok(r.status === 400 || r.status === 505, `${name}: 400 or 505 (got ${r.status})`, todo ?? {})
    t.equal(s.up.hits - before, 0, `${name}: not forwarded`, todo ?? {})
  }
  // RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
  await expectRefused(t, s, 'Transfer-Encoding on HTTP/1.0 (keep-alive, then a pipelined request)',
    crlf('POST /c/te10 HTTP/1.0', 'Host: a.test', 'Connection: keep-alive', 'Transfer-Encoding: chunked', '', '3', 'abc', '0', '', 'GET /c/te10/smuggled HTTP/1.1', 'Host: a.test', '', ''),
    '/c/te10')
})

t.test('chunked bodies broken after the head: 400, closed, the upstream never sees a complete request', async (t) => {
  // The head is valid, so the request may already be streaming upstream when the body turns
  // out broken: the guarantee is that the upstream request is aborted, never completed.
  const s = await setup(t)
  const cases: [string, string][] = [
    ['bad hex chunk size', crlf('POST /b/1 HTTP/1.1', 'Host: a.test', 'Transfer-Encoding: chunked', '', 'zz', 'abc', '0', '', '')],
    ['chunk size with trailing junk', crlf('POST /b/2 HTTP/1.1', 'Host: a.test', 'Transfer-Encoding: chunked', '', '3 junk', 'abc', '0', '', '')],
    ['chunk size with spaces before CRLF (lenient parsers only)', crlf('POST /b/3 HTTP/1.1', 'Host: a.test', 'Transfer-Encoding: chunked', '', '3  ', 'abc', '0', '', '')],
    ['missing CRLF after chunk data', 'POST /b/4 HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n'],
    ['chunk data longer than its size', crlf('POST /b/5 HTTP/1.1', 'Host: a.test', 'Transfer-Encoding: chunked', '', '3', 'abcdef', '0', '', '')],
    ['chunk size overflowing 64 bits', crlf('POST /b/6 HTTP/1.1', 'Host: a.test', 'Transfer-Encoding: chunked', '', 'fffffffffffffffff1', 'abc', '0', '', '')],
    ['bare LF after the chunk size', 'POST /b/7 HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n']
  ]
  for (const [name, bytes] of cases) {
    const path = targetOf(bytes)
    const r = await sendRaw(s.proxy.url, bytes, { responses: 1 })
    t.equal(r.status, 400, `${name}: 400`)
    t.ok(r.closedByServer, `${name}: connection closed`)
    t.equal(r.responses.length, 1, `${name}: one response`)
    const at = s.seen.filter((x) => x.url === path)
    if (at.length > 0) await waitFor(() => at.every((x) => x.closed), 5000, `${name}: the upstream request to end`)
    t.ok(at.every((x) => !x.complete), `${name}: the upstream never saw a complete request (${at.length} started, ${at.map((x) => x.body).join(',') || 0} body bytes)`)
  }
})

t.test('well-formed framing still works (controls for the cases above)', async (t) => {
  const s = await setup(t)
  const cases: [string, string, number][] = [
    ['Content-Length', crlf('POST /ok/1 HTTP/1.1', 'Host: a.test', 'Content-Length: 5', '', 'abcde'), 5],
    ['Content-Length with extra whitespace (OWS is not part of the value)', crlf('POST /ok/2 HTTP/1.1', 'Host: a.test', 'Content-Length:   5  ', '', 'abcde'), 5],
    ['chunked', crlf('POST /ok/3 HTTP/1.1', 'Host: a.test', 'Transfer-Encoding: chunked', '', '3', 'abc', '2', 'de', '0', '', ''), 5],
    ['chunked, upper case, tab before the value', crlf('POST /ok/4 HTTP/1.1', 'Host: a.test', 'Transfer-Encoding:\tCHUNKED', '', '3', 'abc', '0', '', ''), 3],
    ['chunk extension and trailer', crlf('POST /ok/5 HTTP/1.1', 'Host: a.test', 'Transfer-Encoding: chunked', '', '3;name=value', 'abc', '0', 'X-Trailer: t', '', ''), 3]
  ]
  for (const [name, bytes, body] of cases) {
    const r = await sendRaw(s.proxy.url, bytes, { responses: 1 })
    t.equal(r.status, 200, `${name}: 200`)
    t.notOk(r.closedByServer, `${name}: the connection stays open`)
    const seen = s.seen.find((x) => x.url === targetOf(bytes))
    t.ok(seen?.complete, `${name}: one complete request upstream`)
    t.equal(seen?.body, body, `${name}: the upstream got exactly the ${body} body bytes`)
    const names = (seen?.raw ?? []).filter((_, i) => i % 2 === 0).map((h) => h.toLowerCase())
    t.ok(!(names.includes('content-length') && names.includes('transfer-encoding')), `${name}: the upstream never gets both Content-Length and Transfer-Encoding`)
    t.equal(names.filter((h) => h === 'content-length' || h === 'transfer-encoding').length, 1, `${name}: exactly one framing field upstream`)
  }
})

t.test('the lenient (insecure) HTTP parser is never enabled', async (t) => {
  const s = await setup(t)
  const server = s.proxy.app.proxy.server as Server & { insecureHTTPParser?: boolean }
  t.equal(server.insecureHTTPParser, false, 'the proxy server is created with insecureHTTPParser: false')
  t.notOk(process.execArgv.some((a) => a.includes('insecure-http-parser')), 'not enabled process-wide by a flag')
  t.notMatch(process.env.NODE_OPTIONS ?? '', /insecure-http-parser/, 'nor through NODE_OPTIONS')

  // Requests that only the lenient parser accepts: a lenient control server takes them all.
  const lenientOnly = [
    crlf('GET /c/lenient1 HTTP/1.1', 'Host: a.test', 'X-A: a\x01b', '', ''),
    'GET /c/lenient2 HTTP/1.1\nHost: a.test\n\n',
    crlf('GET /c/lenient3 HTTP/1.1', 'Host: a.test', 'Content-Length: 3', 'Transfer-Encoding: chunked', '', '0', '', '')
  ]
  const lenient = createServer({ insecureHTTPParser: true }, (req, res) => { req.resume(); req.on('end', () => res.end('lenient ok')) })
  await new Promise<void>((r) => lenient.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => { lenient.closeAllConnections(); lenient.close(() => r()) }))
  const lenientUrl = `http://127.0.0.1:${(lenient.address() as AddressInfo).port}`
  for (const bytes of lenientOnly) {
    t.equal((await sendRaw(lenientUrl, bytes, { responses: 1 })).status, 200, `control: a lenient parser accepts ${JSON.stringify(bytes.slice(0, 40))}`)
    await expectRefused(t, s, `lenient-only ${JSON.stringify(targetOf(bytes))}`, bytes, targetOf(bytes))
  }
})

t.test('malformed or smuggled upstream responses: 502 or a cut, connection discarded, nothing cached', async (t) => {
  const CC = 'Cache-Control: public, max-age=60\r\n'
  const GOOD = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: public, max-age=60\r\nContent-Length: 4\r\n\r\ngood'
  interface Case { name: string; bytes: string; end?: boolean; cut?: boolean; cutOk?: boolean; todo?: string; todoOn?: string; crash?: string }
  const cases: Case[] = [
    { name: 'Content-Length and Transfer-Encoding', bytes: `HTTP/1.1 200 OK\r\n${CC}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n` },
    { name: 'two different Content-Length', bytes: `HTTP/1.1 200 OK\r\n${CC}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!` },
    { name: 'Content-Length: 5a', bytes: `HTTP/1.1 200 OK\r\n${CC}Content-Length: 5a\r\n\r\nhello` },
    { name: 'Content-Length: +5', bytes: `HTTP/1.1 200 OK\r\n${CC}Content-Length: +5\r\n\r\nhello` },
    { name: 'bad status line (2OO)', bytes: `HTTP/1.1 2OO OK\r\n${CC}Content-Length: 5\r\n\r\nhello` },
    { name: 'bad protocol name', bytes: `HTTX/1.1 200 OK\r\n${CC}Content-Length: 5\r\n\r\nhello` },
    { name: 'no status line at all', bytes: 'hello world\r\n\r\n' },
    { name: 'status 099', bytes: `HTTP/1.1 099 Weird\r\n${CC}Content-Length: 5\r\n\r\nhello` },
    { name: 'status 999', bytes: `HTTP/1.1 999 Weird\r\n${CC}Content-Length: 5\r\n\r\nhello` },
    { name: 'invalid field name (space)', bytes: `HTTP/1.1 200 OK\r\n${CC}Bad Header: x\r\nContent-Length: 5\r\n\r\nhello` },
    { name: 'NUL in a field name', bytes: `HTTP/1.1 200 OK\r\n${CC}X\x00Y: x\r\nContent-Length: 5\r\n\r\nhello` },
    { name: 'NUL in a field value', bytes: `HTTP/1.1 200 OK\r\n${CC}X-Y: a\x00b\r\nContent-Length: 5\r\n\r\nhello` },
    { name: 'space before the colon', bytes: `HTTP/1.1 200 OK\r\n${CC}X-A : b\r\nContent-Length: 5\r\n\r\nhello` },
    { name: 'obs-fold', bytes: `HTTP/1.1 200 OK\r\n${CC}X-Fold: a\r\n b\r\nContent-Length: 5\r\n\r\nhello` },
    { name: 'bare LF line endings', bytes: 'HTTP/1.1 200 OK\nCache-Control: public, max-age=60\nContent-Length: 5\n\nhello' },
    { name: 'bare CR after the status line', bytes: `HTTP/1.1 200 OK\r${CC}Content-Length: 5\r\n\r\nhello` },
    { name: 'bad chunk size before any body', bytes: `HTTP/1.1 200 OK\r\n${CC}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`, cutOk: true },
    { name: 'bad chunk size after the first chunk (head already sent)', bytes: `HTTP/1.1 200 OK\r\n${CC}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n`, cut: true },
    { name: 'Content-Length longer than the body, then close (head already sent)', bytes: `HTTP/1.1 200 OK\r\n${CC}Content-Length: 100\r\n\r\nhello`, end: true, cut: true },
    { name: 'Content-Length longer than the body, then silence (head already sent)', bytes: `HTTP/1.1 200 OK\r\n${CC}Content-Length: 100\r\n\r\nhello`, cut: true }
  ]
  /** One upstream per case; `prefixes` picks the plain route, the caching route or both. */
  const run = async (t: TapTest, c: Case, prefixes: string[]): Promise<void> => {
    const firstFor = new Set<string>()
    const up = await startRawUpstream((socket, _i, reqHead) => {
      const path = targetOf(reqHead)
      if (path.endsWith('/bad') && !firstFor.has(path)) {
        firstFor.add(path)
        socket.write(c.bytes)
        if (c.end === true) socket.end()
      } else {
        socket.write(GOOD)
      }
    })
    t.teardown(() => up.close())
    const proxy = await proxyFor(t, `
pools: { p: { members: [{ url: "${up.url}" }], timeouts: { request_ms: 1000 }, outlier: { consecutive_failures: 0 } } }
routes:
  - { name: cached, match: { path_prefix: /cached }, pool: p, cache: { enabled: true } }
  - { name: plain, match: {}, pool: p, retries: { attempts: 0 } }
`)
    for (const prefix of prefixes) {
      const o2 = c.todo !== undefined && (c.todoOn === undefined || c.todoOn === prefix) ? { todo: c.todo } : {}
      const r = await sendRaw(proxy.url, `GET ${prefix}/bad HTTP/1.1\r\nHost: a.test\r\n\r\n`, { idleMs: 3000, responses: 1 })
      const res = r.responses[0]
      if (c.cutOk === true && r.status !== 502 && o2.todo === undefined) {
        t.ok(r.closedByServer, `${prefix}: no 502, so the connection is cut`)
        t.notOk(res?.complete === true && res.status < 500, `${prefix}: and no complete success answer was delivered`)
      } else if (c.cut === true) {
        t.equal(res?.status, 200, `${prefix}: the head was already sent`)
        t.notOk(res?.complete, `${prefix}: the body is incomplete`)
        t.ok(r.closedByServer, `${prefix}: the client connection is cut, so the client can tell`)
      } else {
        t.equal(r.status, 502, `${prefix}: 502`, o2)
        t.match(res?.body.toString() ?? '', /^502 Bad Gateway: pool p: /, `${prefix}: our plain 502 body`, o2)
        t.notOk(res?.headers['cache-control'], `${prefix}: none of the bad response's headers reach the client`, o2)
      }
      t.notMatch(r.text, /POISON/, `${prefix}: nothing after the declared body reaches the client`)
      const used = up.requests.filter((q) => targetOf(q.head) === `${prefix}/bad`).map((q) => q.connection)
      t.equal(used.length, 1, `${prefix}: one upstream request`)
      await waitFor(() => used.every((n) => up.isClosed(n)), 2000, `${prefix}: the upstream connection to be discarded`).then(
        () => t.pass(`${prefix}: the upstream connection was discarded`),
        () => t.fail(`${prefix}: the upstream connection was discarded`, o2))
      const follow = await fetchText(`${proxy.url}${prefix}/bad`, { headers: { host: 'a.test' } })
      t.equal(follow.status, 200, `${prefix}: the next request is served`)
      t.equal(follow.body, 'good', `${prefix}: with the good answer`)
      if (prefix === '/cached') t.equal(follow.headers['x-cache'], 'MISS', `${prefix}: a MISS: the bad response was not stored`)
      t.notOk(used.includes(up.requests.at(-1)?.connection ?? -1), `${prefix}: on a new upstream connection`, o2)
    }
  }
  for (const c of cases) {
    await t.test(c.name, (t) => run(t, c, c.crash === undefined ? ['/plain', '/cached'] : ['/plain']))
    // A case that takes the process down is kept visible, but not run (tap skips todo subtests).
    if (c.crash !== undefined) await t.test(`${c.name}, on a caching route`, { todo: c.crash }, (t) => run(t, c, ['/cached']))
  }

  await t.test('Content-Length shorter than what was sent: the excess (a whole response) is never served', async (t) => {
    const sent = new Set<string>()
    const up = await startRawUpstream((socket, _i, reqHead) => {
      const path = targetOf(reqHead)
      if (sent.has(path) || !path.endsWith('/short')) { socket.write(GOOD); return }
      sent.add(path)
      socket.write(`HTTP/1.1 200 OK\r\n${CC}Content-Length: 2\r\n\r\nhe` + `HTTP/1.1 200 OK\r\n${CC}Content-Length: 6\r\n\r\nPOISON`)
    })
    t.teardown(() => up.close())
    const proxy = await proxyFor(t, `
pools: { p: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: cached, match: { path_prefix: /cached }, pool: p, cache: { enabled: true } }
  - { name: plain, match: {}, pool: p }
`)
    for (const prefix of ['/plain', '/cached']) {
      const r = await sendRaw(proxy.url, `GET ${prefix}/short HTTP/1.1\r\nHost: a.test\r\n\r\n`, { responses: 1 })
      t.equal(r.status, 200, `${prefix}: the declared 2-byte response is delivered`)
      t.equal(r.responses[0]?.body.toString(), 'he')
      t.notMatch(r.text, /POISON/, `${prefix}: the excess is not`)
      const conn = up.requests.find((q) => targetOf(q.head) === `${prefix}/short`)?.connection ?? -1
      await waitFor(() => up.isClosed(conn), 5000, 'the upstream connection with excess bytes to be discarded')
      t.pass(`${prefix}: the upstream connection with excess bytes was discarded`)
      for (let i = 0; i < 3; i++) {
        const next = await fetchText(`${proxy.url}${prefix}/other${i}`, { headers: { host: 'a.test' } })
        t.equal(next.body, 'good', `${prefix}: a later request (${i}) gets its own answer, never the excess`)
      }
      if (prefix === '/cached') {
        const again = await fetchText(`${proxy.url}/cached/short`, { headers: { host: 'a.test' } })
        t.notMatch(again.body, /POISON/)
        t.not(again.headers['x-cache'], 'HIT', 'a response followed by excess bytes is not stored', { todo: 'a response whose connection then carried excess bytes (a desync sign) is still cached' })
      }
    }
  })
})
