/**
 * Web cache poisoning and deception against the shared cache: an attacker's request must never
 * change what another client is served from the cache. Unkeyed inputs (forwarding headers,
 * override headers, the Host port, a GET body) either do not reach the origin or are keyed;
 * personal answers (Authorization, Cookie, Set-Cookie, private) are not shared unless RFC 9111
 * section 3.5 or the route's explicit opt-in allows it; a file extension never makes an answer
 * cacheable.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import t from 'tap'
import { startUpstream, type Upstream } from '../fixtures/upstream.js'
import { fetchText, type Answer } from '../fixtures/proxy.js'
import { countBytes, proxyFor, sendRaw, type Teardown } from '../fixtures/security.js'

type Page = (req: IncomingMessage, res: ServerResponse, body: string) => void

const reflect = (cc: Record<string, string>): Page => (req, res, body) => {
  const h = req.headers
  res.writeHead(200, { 'content-type': 'text/plain', ...cc })
  res.end([
    `method=${req.method}`, `url=${req.url}`, `host=${h.host}`, `xfh=${h['x-forwarded-host']}`, `xfp=${h['x-forwarded-proto']}`,
    `xfs=${h['x-forwarded-scheme']}`, `xou=${h['x-original-url']}`, `xru=${h['x-rewrite-url']}`, `xhmo=${h['x-http-method-override']}`,
    `xfport=${h['x-forwarded-port']}`, `xhost=${h['x-host']}`, `fwd=${h.forwarded}`, `xfprefix=${h['x-forwarded-prefix']}`,
    `auth=${h.authorization}`, `cookie=${h.cookie}`, `cl=${h['content-length']}`, `te=${h['transfer-encoding']}`, `body=${body}`
  ].join('\n'))
}

const PUBLIC = { 'cache-control': 'public, max-age=60' }
const PAGES: Record<string, Page> = {
  reflect: reflect(PUBLIC),
  'max-age': reflect({ 'cache-control': 'max-age=60' }),
  'auth-public': reflect(PUBLIC),
  'auth-smaxage': reflect({ 'cache-control': 's-maxage=60' }),
  private: reflect({ 'cache-control': 'private, max-age=60' }),
  none: reflect({}),
  'set-cookie': reflect({ ...PUBLIC, 'set-cookie': 'session=issued-to-victim' }),
  'vary-xfh': reflect({ ...PUBLIC, vary: 'X-Forwarded-Host' })
}

/** The page is the first path segment after the route prefix: /c/<page>/anything. */
async function setup(t: Teardown, extra = '') {
  const up = await startUpstream('origin', (req, res) => {
    let body = ''
    req.setEncoding('latin1')
    req.on('data', (d: string) => { body += d })
    req.on('end', () => {
      const page = (req.url ?? '').split('?')[0].split('/')[2] ?? ''
      const h = PAGES[page]
      if (h === undefined) { res.writeHead(404).end(); return }
      h(req, res, body)
    })
  })
  const bytes = countBytes(up)
  t.teardown(() => up.close())
  const proxy = await proxyFor(t, `
${extra}
cache: { store: memory }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: ignore-cookies, match: { path_prefix: /i }, pool: p, cache: { enabled: true, cookies: ignore } }
  - { name: cached, match: { path_prefix: /c }, pool: p, cache: { enabled: true } }
`)
  const get = (path: string, headers: Record<string, string> = {}): Promise<Answer> => fetchText(`${proxy.url}${path}`, { headers: { host: 'a.test', ...headers } })
  return { up, bytes, proxy, get }
}

const hitsFor = (up: Upstream, path: string): number => up.received.filter((r) => r.url === path).length

t.test('unkeyed headers cannot change what other clients get from the cache', async (t) => {
  const s = await setup(t)
  const attacks: [string, string][] = [
    ['X-Forwarded-Host', 'evil.test'],
    ['X-Forwarded-Scheme', 'nothttp'],
    ['X-Forwarded-Proto', 'https'],
    ['X-Forwarded-Port', '1337'],
    ['X-Forwarded-Prefix', '/evil'],
    ['X-Host', 'evil.test'],
    ['Forwarded', 'host=evil.test;proto=https'],
    ['X-Original-URL', '/evil-admin'],
    ['X-Rewrite-URL', '/evil-admin'],
    ['X-HTTP-Method-Override', 'POST']
  ]
  const clean = await s.get('/c/reflect/baseline')
  t.equal(clean.headers['x-cache'], 'MISS')
  for (const [name, value] of attacks) {
    const path = `/c/reflect/${name.toLowerCase()}`
    const poisoned = await s.get(path, { [name]: value })
    t.equal(poisoned.status, 200, `${name}: the attacker is served`)
    const victim = await s.get(path)
    t.equal(victim.body, clean.body.replace('/c/reflect/baseline', path), `${name}: another client gets exactly the clean answer`)
    t.notMatch(victim.body, /evil|1337|nothttp|https|method=POST|xhmo=POST/, `${name}: no trace of the attacker's value`)
    t.equal(hitsFor(s.up, path), 1, `${name}: one origin request (the victim was a HIT, so it must be clean)`)
  }
})

t.test('the Host port and spelling, and absolute-form targets, cannot poison another host\'s entry', async (t) => {
  const s = await setup(t)
  const todoHost = {}
  for (const [name, host] of [['Host with a port', 'a.test:1337'], ['Host in upper case with a trailing dot', 'A.TEST.']]) {
    const path = `/c/reflect/${name.replace(/\W+/g, '-')}`
    await sendRaw(s.proxy.url, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`, { responses: 1 })
    const victim = await s.get(path)
    t.match(victim.body, /\nhost=a\.test\n/, `${name}: another client's answer was made for Host: a.test`, todoHost)
    t.match(victim.body, /\nxfh=a\.test\n/, `${name}: and X-Forwarded-Host: a.test`, todoHost)
  }
  const path = '/c/reflect/absolute-form'
  await sendRaw(s.proxy.url, `GET http://a.test${path} HTTP/1.1\r\nHost: evil.test\r\n\r\n`, { responses: 1 })
  const victim = await s.get(path)
  t.notMatch(victim.body, /evil/, 'absolute-form with a different Host field: no trace of that Host in another client\'s answer')
})

t.test('a GET body is never forwarded and never part of the key', async (t) => {
  const s = await setup(t)
  const path = '/c/reflect/get-body'
  const smuggle = `GET /c/reflect/smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n`
  const first = await sendRaw(s.proxy.url, `GET ${path} HTTP/1.1\r\nHost: a.test\r\nContent-Length: ${smuggle.length}\r\n\r\n${smuggle}`, { responses: 1, lingerMs: 300 })
  t.equal(first.status, 200)
  t.equal(first.responses.length, 1, 'one request, one response: the body was not read as a request')
  t.match(first.responses[0]?.body.toString() ?? '', /\ncl=undefined\nte=undefined\nbody=\n?$/, 'the origin saw no body and no framing field')
  t.notMatch(s.bytes.text, /smuggled/, 'the body never reached the origin\'s socket')
  const chunked = await sendRaw(s.proxy.url, `GET ${path} HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n6\r\npoison\r\n0\r\n\r\n`, { responses: 1 })
  t.equal(chunked.responses[0]?.headers['x-cache'], 'HIT', 'a different (chunked) body gets the same entry: the body is not keyed')
  const victim = await s.get(path)
  t.equal(victim.headers['x-cache'], 'HIT')
  t.notMatch(victim.body, /poison|smuggled/, 'no trace of any body')
  t.equal(hitsFor(s.up, path), 1)
  t.equal(hitsFor(s.up, '/c/reflect/smuggled'), 0, 'the embedded request was never made')
  const head = await sendRaw(s.proxy.url, `HEAD /c/reflect/head-body HTTP/1.1\r\nHost: a.test\r\nContent-Length: 6\r\n\r\npoison`, { responses: 1, methods: ['HEAD'] })
  t.equal(head.status, 200, 'HEAD with a body')
  t.notMatch(s.bytes.text, /poison/, 'no body ever reached the origin\'s socket')
})

t.test('cache deception: a file extension never makes a personal answer cacheable', async (t) => {
  const s = await setup(t)
  for (const prefix of ['/c', '/i']) {
    for (const page of ['private', 'none']) {
      for (const file of ['account.css', 'account.js', 'avatar.png', 'profile.jpg', 'x/..;/account.css']) {
        const path = `${prefix}/${page}/${file}`
        const mine = await s.get(path, { cookie: 'session=victim-secret' })
        t.match(mine.body, /victim-secret/, `${path}: the victim gets their page`)
        const other = await s.get(path)
        t.notMatch(other.body, /victim-secret/, `${path}: another client never gets it`)
        t.not(other.headers['x-cache'], 'HIT', `${path}: not a HIT`)
      }
    }
  }
  // Even without any cookie, an answer without freshness information is not stored.
  for (const file of ['style.css', 'app.js', 'logo.png']) {
    await s.get(`/c/none/${file}`)
    const again = await s.get(`/c/none/${file}`)
    t.not(again.headers['x-cache'], 'HIT', `/c/none/${file}: no freshness information, not stored (${String(again.headers['x-cache'])})`)
  }
})

t.test('Authorization: not shared unless the answer says public or s-maxage (RFC 9111 3.5)', async (t) => {
  const s = await setup(t)
  const mine = await s.get('/c/max-age/a', { authorization: 'Bearer victim-token' })
  t.match(mine.body, /victim-token/)
  const other = await s.get('/c/max-age/a')
  t.notMatch(other.body, /victim-token/, 'max-age only: another client does not get it')
  t.not(other.headers['x-cache'], 'HIT')
  for (const page of ['auth-public', 'auth-smaxage']) {
    await s.get(`/c/${page}/a`, { authorization: 'Bearer victim-token' })
    const shared = await s.get(`/c/${page}/a`)
    t.equal(shared.headers['x-cache'], 'HIT', `${page}: the origin allowed sharing, so it is shared`)
  }
  const priv = await s.get('/c/private/a', { authorization: 'Bearer victim-token' })
  t.match(priv.body, /victim-token/)
  t.not((await s.get('/c/private/a')).headers['x-cache'], 'HIT', 'private: never shared')
})

t.test('Cookie: bypasses the cache unless the route opts in; Set-Cookie answers are never shared', async (t) => {
  const s = await setup(t)
  await s.get('/c/reflect/cookie', { cookie: 'session=victim-secret' })
  const other = await s.get('/c/reflect/cookie')
  t.notMatch(other.body, /victim-secret/, 'default (cookies: bypass): a public answer to a request with cookies is not stored')
  t.equal(other.headers['x-cache'], 'MISS')
  const withCookie = await s.get('/c/reflect/cookie', { cookie: 'session=other' })
  t.match(withCookie.body, /session=other/, 'and a request with cookies is not served from the cache either')

  await s.get('/i/reflect/cookie', { cookie: 'session=victim-secret' })
  const opted = await s.get('/i/reflect/cookie')
  t.equal(opted.headers['x-cache'], 'HIT', 'cookies: ignore (the route opted in): a public answer is shared')
  await s.get('/i/private/cookie', { cookie: 'session=victim-secret' })
  t.not((await s.get('/i/private/cookie')).headers['x-cache'], 'HIT', 'cookies: ignore still never shares a private answer')

  for (const prefix of ['/c', '/i']) {
    await s.get(`${prefix}/set-cookie/x`)
    const again = await s.get(`${prefix}/set-cookie/x`)
    t.not(again.headers['x-cache'], 'HIT', `${prefix}: an answer with Set-Cookie is not stored`)
  }
})

t.test('trusted proxies: their forwarding headers reach the origin; an origin that uses them varies on them', async (t) => {
  // Documented design (README, HTTP cache): forwarding headers from trusted_proxies are passed
  // on as sent and are not keyed by themselves; an origin whose answer depends on them says so
  // with Vary, and the cache keys on that. Trusted proxies must set these fields, not relay them.
  const s = await setup(t, 'trusted_proxies: [127.0.0.0/8]')
  const a = await s.get('/c/vary-xfh/trusted', { 'x-forwarded-host': 'evil.test' })
  t.match(a.body, /xfh=evil\.test/, 'a trusted proxy\'s X-Forwarded-Host reaches the origin')
  const b = await s.get('/c/vary-xfh/trusted', { 'x-forwarded-host': 'www.example.com' })
  t.equal(b.headers['x-cache'], 'MISS', 'with Vary: X-Forwarded-Host, a different value is a different entry')
  t.notMatch(b.body, /evil/, 'and gets its own answer')
  const again = await s.get('/c/vary-xfh/trusted', { 'x-forwarded-host': 'www.example.com' })
  t.equal(again.headers['x-cache'], 'HIT', 'the same value is a HIT')
  t.match(again.body, /xfh=www\.example\.com/)
})
