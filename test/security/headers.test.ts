/**
 * Header hygiene at the edge, from exact bytes: hop-by-hop fields never cross the proxy in
 * either direction (RFC 9110 section 7.6.1), forwarding fields are ours unless a trusted proxy
 * sent them, fields that let a client redirect an origin are dropped, CR/LF tricks never
 * produce a header upstream, and oversized heads get 431. Complements
 * test/integration/headers.test.ts (the same rules seen through a normal client).
 */
import t from 'tap'
import { startUpstream } from '../fixtures/upstream.js'
import { fetchText } from '../fixtures/proxy.js'
import { countBytes, proxyFor, sendRaw, startRawUpstream, type Teardown } from '../fixtures/security.js'

const req = (...lines: string[]): string => lines.join('\r\n') + '\r\n\r\n'

/** Field names (lower case) of a raw header list [name, value, name, value, ...]. */
const names = (raw: string[]): string[] => raw.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())
const values = (raw: string[], name: string): string[] => raw.filter((_, i) => i % 2 === 1 && raw[i - 1].toLowerCase() === name)

async function setup(t: Teardown, extra = '') {
  const up = await startUpstream('u', (q, res) => {
    let n = 0
    q.on('data', (d: Buffer) => { n += d.length })
    q.on('end', () => res.end(`body=${n}`))
  })
  const bytes = countBytes(up)
  t.teardown(() => up.close())
  const proxy = await proxyFor(t, `
${extra}
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: p }]
`)
  return { up, bytes, proxy }
}

t.test('request hop-by-hop fields, and every field the client names in Connection, are not forwarded', async (t) => {
  const s = await setup(t)
  const r = await sendRaw(s.proxy.url, req(
    'POST /h HTTP/1.1',
    'Host: a.test',
    'Connection: keep-alive, X-Drop-Me, X-Forwarded-For, X-Real-IP, Via, X-Request-Id, Content-Length',
    'X-Drop-Me: 1',
    'Keep-Alive: timeout=5',
    'TE: trailers',
    'Trailer: X-T',
    'Upgrade: websocket',
    'Proxy-Authorization: Basic Zm9vOmJhcg==',
    'Proxy-Connection: keep-alive',
    'HTTP2-Settings: AAMAAABkAAQAAP__',
    'X-Custom: kept',
    'Content-Length: 5'
  ) + 'hello', { responses: 1 })
  t.equal(r.status, 200)
  const raw = s.up.received[0].rawHeaders
  for (const h of ['x-drop-me', 'keep-alive', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection', 'http2-settings']) {
    t.notOk(names(raw).includes(h), `${h} is not forwarded`)
  }
  t.notMatch(values(raw, 'connection').join(), /x-drop-me|x-forwarded-for/i, 'the client\'s Connection value is not forwarded')
  t.equal(values(raw, 'x-custom')[0], 'kept', 'an end-to-end field is')
  // Naming the proxy's own fields in Connection does not remove them.
  t.same(values(raw, 'x-forwarded-for'), ['127.0.0.1'], 'X-Forwarded-For is still ours')
  t.same(values(raw, 'x-real-ip'), ['127.0.0.1'], 'X-Real-IP is still ours')
  t.same(values(raw, 'via'), ['1.1 switchyard'], 'Via is still ours')
  t.equal(values(raw, 'x-request-id').length, 1, 'X-Request-Id is still sent')
  // Naming Content-Length in Connection does not break the framing of the body.
  t.equal(r.responses[0]?.body.toString(), 'body=5', 'the body still arrives whole')
})

t.test('response hop-by-hop fields, and those the upstream names in Connection, do not reach the client', async (t) => {
  const up = await startRawUpstream((socket) => {
    socket.write([
      'HTTP/1.1 200 OK',
      'Connection: keep-alive, X-Secret-Hop',
      'X-Secret-Hop: must-not-reach-the-client',
      'Keep-Alive: timeout=99, max=1000',
      'Proxy-Authenticate: Basic realm="inner"',
      'Proxy-Connection: keep-alive',
      'Upgrade: h2c',
      'Trailer: X-T',
      'TE: trailers',
      'X-Kept: yes',
      'Transfer-Encoding: chunked',
      '', '5', 'hello', '0', 'X-T: trailer-value', '', ''
    ].join('\r\n'))
  })
  t.teardown(() => up.close())
  const proxy = await proxyFor(t, `
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: p }]
`)
  const r = await sendRaw(proxy.url, req('GET /r HTTP/1.1', 'Host: a.test'), { responses: 1 })
  const res = r.responses[0]
  t.equal(res?.status, 200)
  t.equal(res?.body.toString(), 'hello')
  const got = (res?.headerList ?? []).map(([n]) => n.toLowerCase())
  for (const h of ['x-secret-hop', 'proxy-authenticate', 'proxy-connection', 'upgrade', 'trailer', 'te']) t.notOk(got.includes(h), `${h} does not reach the client`)
  t.notMatch(res?.headers['keep-alive'] ?? '', /99/, 'the upstream\'s Keep-Alive does not reach the client')
  t.notMatch(res?.headers.connection ?? '', /secret/i, 'nor its Connection value')
  t.notMatch(r.text, /trailer-value/, 'nor its trailer')
  t.equal(res?.headers['x-kept'], 'yes', 'end-to-end fields do')
  t.equal(got.filter((h) => h === 'transfer-encoding' || h === 'content-length').length, 1, 'exactly one framing field, set by the proxy')
  t.notOk(r.closedByServer, 'the client connection stays open')
})

t.test('Connection: close from the client closes the client connection after the response, and only that one', async (t) => {
  const up = await startRawUpstream((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'))
  t.teardown(() => up.close())
  const proxy = await proxyFor(t, `
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: all, match: {}, pool: p }]
`)
  const r = await sendRaw(proxy.url, req('GET /a HTTP/1.1', 'Host: a.test', 'Connection: close'), { responses: 1, lingerMs: 1000 })
  t.equal(r.status, 200)
  t.equal(r.responses[0]?.headers.connection?.toLowerCase(), 'close', 'the answer says Connection: close')
  t.ok(r.closedByServer, 'and the proxy closes the client connection')
  t.ok(r.ms < 1000, `promptly (${r.ms} ms)`)
  t.notMatch(up.requests[0].head, /connection: close/i, 'close is not passed upstream')
  t.notOk(up.isClosed(0), 'the upstream connection stays in the pool')

  const ten = await sendRaw(proxy.url, 'GET /b HTTP/1.0\r\nHost: a.test\r\n\r\n', { lingerMs: 1000 })
  t.equal(ten.status, 200)
  t.ok(ten.closedByServer, 'HTTP/1.0 without keep-alive: closed after the response')

  // A request pipelined after Connection: close is never processed (RFC 9112 section 9.6).
  const before = up.requests.length
  const p = await sendRaw(proxy.url, req('GET /c HTTP/1.1', 'Host: a.test', 'Connection: close') + req('GET /after-close HTTP/1.1', 'Host: a.test'), { lingerMs: 1000 })
  t.ok(p.closedByServer, 'closed')
  t.ok(up.requests.slice(before).every((q) => !q.head.includes('/after-close')), 'the pipelined request after close never reached the upstream')
  t.ok(p.responses.length <= 1, 'at most one response')
})

t.test('forwarding fields from an untrusted client are replaced', async (t) => {
  for (const extra of ['', 'trusted_proxies: [10.0.0.0/8]']) {
    const s = await setup(t, extra)
    await sendRaw(s.proxy.url, req(
      'GET /f HTTP/1.1',
      'Host: a.test',
      'X-Forwarded-For: 6.6.6.6',
      'X-Forwarded-For: 7.7.7.7',
      'X-Forwarded-Host: evil.test',
      'X-Forwarded-Proto: https',
      'Forwarded: for=6.6.6.6;host=evil.test;proto=https',
      'X-Real-IP: 6.6.6.6',
      'Via: 1.0 fake'
    ), { responses: 1 })
    const raw = s.up.received[0].rawHeaders
    const label = extra === '' ? 'no trusted proxies' : 'peer outside trusted_proxies'
    t.same(values(raw, 'x-forwarded-for'), ['127.0.0.1'], `${label}: X-Forwarded-For is the peer, once`)
    t.same(values(raw, 'x-forwarded-host'), ['a.test'], `${label}: X-Forwarded-Host is the Host`)
    t.same(values(raw, 'x-forwarded-proto'), ['http'], `${label}: X-Forwarded-Proto is the listener's scheme`)
    t.same(values(raw, 'x-real-ip'), ['127.0.0.1'], `${label}: X-Real-IP is the peer`)
    t.same(values(raw, 'forwarded'), [], `${label}: Forwarded is dropped`)
    t.same(values(raw, 'via'), ['1.0 fake, 1.1 switchyard'], `${label}: Via is appended to (it is not a trust signal)`)
  }
})

t.test('forwarding fields from a trusted proxy are kept and appended to', async (t) => {
  const s = await setup(t, 'trusted_proxies: [127.0.0.0/8]')
  await sendRaw(s.proxy.url, req(
    'GET /f HTTP/1.1',
    'Host: a.test',
    'X-Forwarded-For: 203.0.113.7, 10.1.1.1',
    'X-Forwarded-Host: www.example.com',
    'X-Forwarded-Proto: https',
    'Forwarded: for=203.0.113.7;proto=https',
    'X-Real-IP: 6.6.6.6'
  ), { responses: 1 })
  const raw = s.up.received[0].rawHeaders
  t.same(values(raw, 'x-forwarded-for'), ['203.0.113.7, 10.1.1.1, 127.0.0.1'], 'X-Forwarded-For is appended to')
  t.same(values(raw, 'x-forwarded-host'), ['www.example.com'], 'X-Forwarded-Host is kept')
  t.same(values(raw, 'x-forwarded-proto'), ['https'], 'X-Forwarded-Proto is kept')
  t.same(values(raw, 'forwarded'), ['for=203.0.113.7;proto=https'], 'Forwarded is kept')
  t.same(values(raw, 'x-real-ip'), ['10.1.1.1'], 'X-Real-IP is the right-most untrusted hop, never the client\'s own X-Real-IP')
})

t.test('fields that let a client redirect an origin are dropped', async (t) => {
  for (const extra of ['', 'trusted_proxies: [127.0.0.0/8]']) {
    const s = await setup(t, extra)
    const dropped = ['X-Original-URL: /admin', 'X-Rewrite-URL: /admin', 'X-HTTP-Method-Override: DELETE', 'X-HTTP-Method: DELETE',
      'X-Method-Override: DELETE', 'X-Forwarded-Prefix: /admin', 'X-Forwarded-Port: 443', 'X-Forwarded-Server: evil.test',
      'X-Host: evil.test', 'X-Forwarded-Scheme: https']
    await sendRaw(s.proxy.url, req('GET /o HTTP/1.1', 'Host: a.test', ...dropped), { responses: 1 })
    const got = names(s.up.received[0].rawHeaders)
    for (const line of dropped) {
      const h = line.slice(0, line.indexOf(':')).toLowerCase()
      t.notOk(got.includes(h), `${extra === '' ? 'untrusted' : 'trusted'} client: ${h} is dropped`)
    }
    t.equal(s.up.received[0].method, 'GET')
    t.equal(s.up.received[0].url, '/o')
  }
})

t.test('CR/LF injection attempts never yield a header at the upstream, nor a crash', async (t) => {
  const s = await setup(t)
  const refused: [string, string][] = [
    ['bare CR inside a value', 'GET /i1 HTTP/1.1\r\nHost: a.test\r\nX-A: a\rX-Injected: 1\r\n\r\n'],
    ['bare LF inside a value', 'GET /i2 HTTP/1.1\r\nHost: a.test\r\nX-A: a\nX-Injected: 1\r\n\r\n'],
    ['CR CR LF', 'GET /i3 HTTP/1.1\r\nHost: a.test\r\nX-A: a\r\r\nX-Injected: 1\r\n\r\n'],
    ['obs-fold continuation', 'GET /i4 HTTP/1.1\r\nHost: a.test\r\nX-A: a\r\n X-Injected: 1\r\n\r\n'],
    ['NUL before CRLF', 'GET /i5 HTTP/1.1\r\nHost: a.test\r\nX-A: a\x00\r\nX-Injected: 1\r\n\r\n'],
    ['encoded CRLF in the path', 'GET /i6%0d%0aX-Injected:%201 HTTP/1.1\r\nHost: a.test\r\n\r\n'],
    ['CRLF in the middle of the request line', 'GET /i7 HTTP/1.1 X\r\nX-Injected: 1\r\nHost: a.test\r\n\r\n'],
    ['bare CR in the request target', 'GET /i8\rX-Injected: 1 HTTP/1.1\r\nHost: a.test\r\n\r\n']
  ]
  for (const [name, bytes] of refused) {
    const before = s.bytes.bytes
    const r = await sendRaw(s.proxy.url, bytes, { responses: 1 })
    t.equal(r.status, 400, `${name}: 400`)
    t.equal(s.bytes.bytes - before, 0, `${name}: nothing upstream`)
  }
  // Accepted, but the bytes stay inside their field or their query.
  await sendRaw(s.proxy.url, 'GET /q?x=%0d%0aX-Injected:%201 HTTP/1.1\r\nHost: a.test\r\n\r\n', { responses: 1 })
  // U+560A U+560D in UTF-8: a client that truncated code points to bytes would write CR LF.
  await sendRaw(s.proxy.url, Buffer.concat([Buffer.from('GET /u HTTP/1.1\r\nHost: a.test\r\nX-A: a'), Buffer.from([0xe5, 0x98, 0x8a, 0xe5, 0x98, 0x8d]), Buffer.from('X-Injected: 1\r\n\r\n')]), { responses: 1 })
  const r = await sendRaw(s.proxy.url, req('GET /rid HTTP/1.1', 'Host: a.test', 'X-Request-Id: a%0d%0aSet-Cookie:%20x=1'), { responses: 1 })
  t.notOk(s.up.received.some((q) => names(q.rawHeaders).includes('x-injected')), 'no upstream request ever had an X-Injected field')
  t.notMatch(s.bytes.text, /\r\nX-Injected/i, 'and no X-Injected line ever reached the upstream socket')
  t.equal(s.up.received.find((q) => q.url.startsWith('/q'))?.url, '/q?x=%0d%0aX-Injected:%201', 'an encoded CRLF in the query is passed on still encoded')
  t.same(values(s.up.received.find((q) => q.url === '/u')?.rawHeaders ?? [], 'x-a'), ['a\u00e5\u0098\u008a\u00e5\u0098\u008dX-Injected: 1'], 'UTF-8 bytes stay inside the field, byte for byte')
  t.match(r.responses[0]?.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/, 'an X-Request-Id with escapes is replaced, not echoed')
  t.notOk(r.responses[0]?.headers['set-cookie'], 'nothing is injected into the response')
  t.equal((await fetchText(`${s.proxy.url}/still`, { headers: { host: 'a.test' } })).status, 200, 'the proxy still serves')
})

t.test('oversized heads: 431 and closed, nothing upstream', async (t) => {
  const s = await setup(t, 'limits: { max_header_bytes: 4096 }')
  const cases: [string, string][] = [
    ['one huge field', req('GET /big HTTP/1.1', 'Host: a.test', `X-Big: ${'x'.repeat(5000)}`)],
    ['many small fields over the byte limit', req('GET /many HTTP/1.1', 'Host: a.test', ...Array.from({ length: 1000 }, (_, i) => `X-${i}: v`))],
    ['a huge request target', req(`GET /${'a'.repeat(5000)} HTTP/1.1`, 'Host: a.test')]
  ]
  for (const [name, bytes] of cases) {
    const before = s.bytes.bytes
    const r = await sendRaw(s.proxy.url, bytes, { responses: 1 })
    t.ok(r.status === 431 || (name === 'a huge request target' && (r.status === 414 || r.status === 431)), `${name}: ${r.status}`)
    t.ok(r.closedByServer, `${name}: closed`)
    t.equal(s.bytes.bytes - before, 0, `${name}: nothing upstream`)
  }
  const ok = await sendRaw(s.proxy.url, req('GET /fits HTTP/1.1', 'Host: a.test', `X-Big: ${'x'.repeat(3000)}`), { responses: 1 })
  t.equal(ok.status, 200, 'control: a head under the limit is served')
})

t.test('more fields than the proxy keeps: refused, never silently truncated', async (t) => {
  // 2500 tiny fields fit in 16 KiB (the limit counts name and value bytes) but exceed what
  // Node's parser keeps (1000 field lines while server.maxHeadersCount is unset), beyond which
  // fields are dropped without a word: the upstream would see a different request.
  const s = await setup(t)
  const many = Array.from({ length: 2500 }, (_, i) => `${i.toString(36)}:1`)
  const r = await sendRaw(s.proxy.url, req('GET /count HTTP/1.1', 'Host: a.test', ...many, 'X-Last: 1'), { responses: 1 })
  const todo = {}
  t.equal(r.status, 431, '431', todo)
  t.equal(s.up.hits, 0, 'nothing upstream', todo)
  if (s.up.hits > 0) {
    const raw = s.up.received[0].rawHeaders
    t.ok(names(raw).includes('x-last'), 'if forwarded at all, the last field arrives too', todo)
    t.ok(names(raw).includes('x-real-ip'), 'if forwarded at all, the proxy\'s own fields arrive')
  }
})
