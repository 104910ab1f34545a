import t from 'tap'
import { connect as tlsConnect } from 'node:tls'
import type { WebSocket } from 'ws'
import { parseConfig } from '../../src/config/load.js'
import { fetchText, startProxy, waitFor } from '../fixtures/proxy.js'
import { sendRaw, type TapTest } from '../fixtures/security.js'
import { closed, metricValue, openWs, roundTrip, startWsUpstream, upgradeHead, type WsUpstream } from './websocket-fixtures.js'

async function upstreams(t: TapTest, names: string[]): Promise<WsUpstream[]> {
  const ups = await Promise.all(names.map((n) => startWsUpstream(n)))
  t.teardown(async () => { for (const u of ups) await u.close() })
  return ups
}

/** Who answered: the echo upstream answers "who" with its name. */
async function whoOverWs(url: string, headers: Record<string, string> = {}): Promise<{ who: string; headers: Record<string, string | string[] | undefined> }> {
  const { ws, headers: h } = await openWs(url, { headers })
  try {
    return { who: (await roundTrip(ws, 'who')).data.toString(), headers: h }
  } finally {
    ws.close()
    await closed(ws)
  }
}

t.test('split routes: the sticky cookie picks the pool of an upgrade as of any request; a new client is pinned by the 101', async (t) => {
  const [a, b] = await upstreams(t, ['a', 'b'])
  const proxy = await startProxy(`
pools:
  a: { members: [{ url: "${a.url}" }] }
  b: { members: [{ url: "${b.url}" }] }
routes:
  - name: r
    match: {}
    split: { name: exp, variants: [{ name: va, pool: a, weight: 50 }, { name: vb, pool: b, weight: 50 }] }
`)
  t.teardown(() => proxy.close())
  for (let i = 0; i < 4; i++) {
    t.equal((await whoOverWs(`${proxy.url}/ws`, { cookie: 'sy_split_exp=vb' })).who, 'b', 'cookie vb: pool b')
    t.equal((await whoOverWs(`${proxy.url}/ws`, { cookie: 'sy_split_exp=va' })).who, 'a', 'cookie va: pool a')
  }
  t.equal(a.upgrades[0].headers['x-switchyard-variant'], 'va', 'the member is told the variant')

  // A client without a cookie is drawn, pinned by the 101's Set-Cookie, and stays.
  const first = await whoOverWs(`${proxy.url}/ws`)
  const cookie = String(first.headers['set-cookie']).split(';')[0]
  t.match(cookie, /^sy_split_exp=[A-Za-z0-9_-]{16}\.v[ab]$/)
  t.equal(first.headers['x-switchyard-variant'], cookie.endsWith('va') ? 'va' : 'vb')
  t.equal(first.who, cookie.endsWith('va') ? 'a' : 'b')
  for (let i = 0; i < 4; i++) t.equal((await whoOverWs(`${proxy.url}/ws`, { cookie })).who, first.who, 'the pinned client stays on its pool')
  const plain = await fetchText(`${proxy.url}/page`, { headers: { cookie } })
  t.equal(JSON.parse(plain.body).name, first.who, 'and plain requests with the cookie go there too')
  t.equal(await metricValue(proxy.app.registry, 'switchyard_split_assignments_total', { split: 'exp', variant: 'vb', source: 'cookie' }) >= 4, true)
})

t.test('hash balancer: every upgrade with the same key lands on the same member, the one plain requests go to', async (t) => {
  const ups = await upstreams(t, ['h0', 'h1', 'h2'])
  const proxy = await startProxy(`
pools:
  h: { balancer: hash, hash_on: { header: x-user }, members: [${ups.map((u) => `{ url: "${u.url}" }`).join(', ')}] }
routes: [{ name: r, match: {}, pool: h }]
`)
  t.teardown(() => proxy.close())
  const seen = new Set<string>()
  for (const user of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']) {
    const plain = JSON.parse((await fetchText(`${proxy.url}/p`, { headers: { 'x-user': user } })).body).name as string
    for (let i = 0; i < 3; i++) t.equal((await whoOverWs(`${proxy.url}/ws`, { 'x-user': user })).who, plain, `${user}: upgrade ${i} on ${plain}`)
    seen.add(plain)
  }
  t.ok(seen.size > 1, 'different keys spread over members')
})

t.test('a reload that removes the route and its pool lets open tunnels run until they end', async (t) => {
  const [old, next] = await upstreams(t, ['old', 'next'])
  const yaml = (up: string, route: string): string => `
pools: { ${route}pool: { members: [{ url: "${up}" }] } }
routes: [{ name: ${route}, match: {}, pool: ${route}pool }]
`
  const proxy = await startProxy(yaml(old.url, 'first'))
  t.teardown(() => proxy.close())
  const { ws } = await openWs(`${proxy.url}/ws`)
  t.teardown(() => ws.terminate())
  t.equal((await roundTrip(ws, 'who')).data.toString(), 'old')
  const answer = await proxy.app.reload(parseConfig(yaml(next.url, 'second'), 'test.yaml', process.env))
  t.ok(answer.ok, 'reloaded')
  t.equal((await roundTrip(ws, 'still there')).data.toString(), 'still there', 'the old tunnel still relays, to its old member')
  t.equal((await whoOverWs(`${proxy.url}/ws`)).who, 'next', 'new upgrades follow the new config')
  t.equal(await metricValue(proxy.app.registry, 'switchyard_websocket_tunnels_open', { route: 'first', pool: 'firstpool' }), 1)
  ws.close()
  await closed(ws)
  await waitFor(async () => await metricValue(proxy.app.registry, 'switchyard_websocket_tunnels_open', { route: 'first', pool: 'firstpool' }) === 0, 5000, 'the old tunnel closed')
})

t.test('least_request counts open tunnels: new upgrades go to the member holding fewer', async (t) => {
  const [l0, l1] = await upstreams(t, ['l0', 'l1'])
  const proxy = await startProxy(`
pools: { l: { balancer: least_request, members: [{ url: "${l0.url}" }, { url: "${l1.url}" }] } }
routes: [{ name: r, match: {}, pool: l }]
`)
  t.teardown(() => proxy.close())
  // With two members, power of two choices compares both: open tunnels alternate exactly
  // (random ties would give 3-3 only about a third of the time).
  const opened: WebSocket[] = []
  t.teardown(() => { for (const ws of opened) ws.terminate() })
  for (let i = 0; i < 6; i++) opened.push((await openWs(`${proxy.url}/ws`)).ws)
  t.equal(l0.open.size, 3, 'three tunnels each')
  t.equal(l1.open.size, 3)
  t.equal(await metricValue(proxy.app.registry, 'switchyard_upstream_in_flight', { pool: 'l', member: new URL(l0.url).host }), 3, 'held tunnels show as in flight')
})

t.test('TLS listener: wss is tunnelled with X-Forwarded-Proto https; HSTS on the 101; other upgrades are served plain', async (t) => {
  const [up] = await upstreams(t, ['s'])
  const proxy = await startProxy(`
listen: [{ host: 127.0.0.1, port: 0, tls: { self_signed: true, hsts: { max_age_s: 600 } } }]
pools: { p: { members: [{ url: "${up.url}" }] } }
routes:
  - { name: off, match: { path_prefix: /off }, pool: p, websocket: false }
  - { name: r, match: {}, pool: p }
`)
  t.teardown(() => proxy.close())
  t.match(proxy.url, /^https:/)
  const { ws, headers } = await openWs(`${proxy.url}/secure`, { rejectUnauthorized: false })
  t.teardown(() => ws.terminate())
  t.equal(headers['strict-transport-security'], 'max-age=600')
  t.equal((await roundTrip(ws, 'over tls')).data.toString(), 'over tls')
  t.equal(up.upgrades[0].headers['x-forwarded-proto'], 'https', 'the scheme the client used')

  // websocket: false over TLS: the request is parsed again on the TLS socket and served plain.
  const host = new URL(proxy.url).host
  const plain = await new Promise<string>((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: Number(new URL(proxy.url).port), rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      s.write(upgradeHead('/off/x', host))
    })
    let got = ''
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1')
      if (got.includes('"url":"/off/x"')) { s.destroy(); resolve(got) }
    })
    s.on('error', reject)
  })
  t.match(plain, /^HTTP\/1\.1 200 OK/)
  t.match(plain, /strict-transport-security: max-age=600/i)
  t.equal(up.upgrades.length, 1, 'no second upgrade reached the member')
})

t.test('h2c listener: HTTP/1.1 upgrades are tunnelled on a listener that also sniffs for HTTP/2', async (t) => {
  const [up] = await upstreams(t, ['c'])
  const proxy = await startProxy(`
listen: { host: 127.0.0.1, port: 0, h2c: true }
pools: { p: { members: [{ url: "${up.url}" }] } }
routes: [{ name: r, match: {}, pool: p }]
`)
  t.teardown(() => proxy.close())
  t.equal((await whoOverWs(`${proxy.url}/ws`)).who, 'c')
  const h2cUpgrade = await sendRaw(proxy.url, `GET /x HTTP/1.1\r\nHost: ${new URL(proxy.url).host}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n`, { responses: 1 })
  t.equal(h2cUpgrade.status, 200, 'an h2c upgrade is answered in HTTP/1.1 (only prior knowledge speaks h2c)')
  t.equal(JSON.parse(h2cUpgrade.responses[0]?.body.toString() ?? '{}').headers.upgrade, undefined)
})
