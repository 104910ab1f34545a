/**
 * Bearer JWT rules through a real proxy: HS256 with a secret; RS256 and ES256 with a JWKS file
 * written in a temporary directory (keys made by jose here), read again on reload (a rotated
 * key); expired, not-yet-valid, wrong-audience, wrong-issuer and foreign-key tokens get 401
 * invalid_token, a token without the claims asked for gets 403 insufficient_scope; WebSocket
 * upgrades pass the same rules.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'
import { HTTP1_ONLY, fetchText, startProxy } from '../fixtures/proxy.js'
import { startUpstream } from '../fixtures/upstream.js'
import { metricValue, openWs, startWsUpstream } from '../integration/websocket-fixtures.js'

const SECRET = 'a-test-secret-of-at-least-32-bytes!!'

async function sign(key: CryptoKey | Uint8Array, alg: string, claims: Record<string, unknown>, opts: { kid?: string; exp?: string | number; aud?: string; iss?: string; nbf?: string | number } = {}): Promise<string> {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg, ...(opts.kid === undefined ? {} : { kid: opts.kid }) }).setIssuedAt()
  jwt = jwt.setIssuer(opts.iss ?? 'https://issuer.test').setAudience(opts.aud ?? 'api').setExpirationTime(opts.exp ?? '5m')
  if (opts.nbf !== undefined) jwt = jwt.setNotBefore(opts.nbf)
  return jwt.sign(key)
}

async function publicJwk(alg: 'RS256' | 'ES256', kid: string): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
  const { publicKey, privateKey } = await generateKeyPair(alg)
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } }
}

t.test('JWT rules', async (t) => {
  const up = await startUpstream('api')
  t.teardown(() => up.close())
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-jwks-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const rsa = await publicJwk('RS256', 'rsa-1')
  const ec = await publicJwk('ES256', 'ec-1')
  const stranger = await publicJwk('RS256', 'rsa-1')
  await writeFile(join(dir, 'jwks.json'), JSON.stringify({ keys: [rsa.jwk, ec.jwk] }))
  const configPath = join(dir, 'switchyard.yaml')
  // The secret comes from the environment, at start and on reload (which reads process.env).
  process.env.JWT_SECRET = SECRET
  t.teardown(() => { delete process.env.JWT_SECRET })
  const proxy = await startProxy(`
listen: { host: 127.0.0.1, port: 0 }
pools:
  api: { members: [{ url: ${up.url} }] }
routes:
  - name: hs
    match: { path_prefix: /hs }
    pool: api
    access:
      - name: token
        jwt: { realm: api, secret: "\${JWT_SECRET}", issuer: https://issuer.test, audience: api, clock_tolerance_s: 5 }
  - name: keys
    match: { path_prefix: /keys }
    pool: api
    access:
      - name: signed
        jwt: { jwks_file: jwks.json, issuer: https://issuer.test, audience: [api, other], required_claims: [sub], claims: { scope: read } }
`, { configPath })
  t.teardown(() => proxy.close())
  const reg = proxy.app.registry
  const secret = new TextEncoder().encode(SECRET)

  const probe = async (path: string, token: string | undefined): Promise<{ status: number; reached: boolean; auth: string | undefined; body: string }> => {
    const before = up.hits
    const res = await fetchText(`${proxy.url}${path}`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } })
    return { status: res.status, reached: up.hits > before, auth: res.headers['www-authenticate'] as string | undefined, body: res.body }
  }

  t.test('HS256 with a secret from the environment', async (t) => {
    t.match(await probe('/hs/a', await sign(secret, 'HS256', { sub: 'svc-1' })), { status: 200, reached: true })
    const none = await probe('/hs/a', undefined)
    t.match(none, { status: 401, reached: false, auth: 'Bearer realm="api"' }, 'no token: a challenge without an error code (RFC 6750 section 3.1)')
    const forged = await probe('/hs/a', await sign(new TextEncoder().encode('another-secret-of-at-least-32-bytes'), 'HS256', { sub: 'x' }))
    t.match(forged, { status: 401, reached: false, auth: /^Bearer realm="api", error="invalid_token"/ })
    const expired = await probe('/hs/a', await sign(secret, 'HS256', { sub: 'x' }, { exp: Math.floor(Date.now() / 1000) - 60 }))
    t.match(expired, { status: 401, reached: false, auth: /error="invalid_token", error_description="the token has expired"/ })
    // Within clock_tolerance_s: still valid.
    t.match(await probe('/hs/a', await sign(secret, 'HS256', { sub: 'x' }, { exp: Math.floor(Date.now() / 1000) - 2 })), { status: 200, reached: true })
    t.match(await probe('/hs/a', await sign(secret, 'HS256', { sub: 'x' }, { nbf: Math.floor(Date.now() / 1000) + 600 })), { status: 401, reached: false })
    t.match(await probe('/hs/a', await sign(secret, 'HS256', { sub: 'x' }, { aud: 'someone-else' })), { status: 401, reached: false, auth: /claim aud is not valid/ })
    t.match(await probe('/hs/a', await sign(secret, 'HS256', { sub: 'x' }, { iss: 'https://evil.test' })), { status: 401, reached: false })
    t.match(await probe('/hs/a', 'not.a.token'), { status: 401, reached: false })
    t.equal(await metricValue(reg, 'switchyard_access_denials_total', { route: 'hs', rule: 'token', reason: 'missing_credentials' }), 1)
    t.equal(await metricValue(reg, 'switchyard_access_denials_total', { route: 'hs', rule: 'token', reason: 'invalid_token' }), 6)
  })

  t.test('RS256 and ES256 with a JWKS file; claims', async (t) => {
    const claims = { sub: 'user-7', scope: 'read write' }
    t.match(await probe('/keys/a', await sign(rsa.privateKey, 'RS256', claims, { kid: 'rsa-1' })), { status: 200, reached: true })
    t.match(await probe('/keys/a', await sign(ec.privateKey, 'ES256', claims, { kid: 'ec-1' })), { status: 200, reached: true })
    t.match(await probe('/keys/a', await sign(ec.privateKey, 'ES256', { ...claims, aud: undefined }, { kid: 'ec-1', aud: 'other' })), { status: 200, reached: true }, 'any listed audience')
    t.match(await probe('/keys/a', await sign(stranger.privateKey, 'RS256', claims, { kid: 'rsa-1' })), { status: 401, reached: false, auth: /signature verification failed/ })
    t.match(await probe('/keys/a', await sign(secret, 'HS256', claims)), { status: 401, reached: false }, 'HS256 is not accepted with a JWKS file')
    t.match(await probe('/keys/a', await sign(rsa.privateKey, 'RS256', { scope: 'read' }, { kid: 'rsa-1' })), { status: 401, reached: false }, 'required claim sub missing')
    const scoped = await probe('/keys/a', await sign(rsa.privateKey, 'RS256', { sub: 'user-7', scope: 'write' }, { kid: 'rsa-1' }))
    t.match(scoped, { status: 403, reached: false, auth: /^Bearer realm="switchyard", error="insufficient_scope"/ })
    t.equal(scoped.body, '403 Forbidden: access rule signed: claim scope lacks read\n')
    t.equal(await metricValue(reg, 'switchyard_access_denials_total', { route: 'keys', rule: 'signed', reason: 'insufficient_claims' }), 1)
  })

  t.test('the JWKS file is read again on reload (key rotation)', async (t) => {
    const next = await publicJwk('ES256', 'ec-2')
    await writeFile(join(dir, 'jwks.json'), JSON.stringify({ keys: [next.jwk] }))
    const claims = { sub: 'user-7', scope: 'read' }
    t.match(await probe('/keys/a', await sign(next.privateKey, 'ES256', claims, { kid: 'ec-2' })), { status: 401 }, 'not before the reload')
    const answer = await proxy.app.reload()
    t.equal(answer.ok, true, JSON.stringify(answer))
    t.match(await probe('/keys/a', await sign(next.privateKey, 'ES256', claims, { kid: 'ec-2' })), { status: 200, reached: true })
    t.match(await probe('/keys/a', await sign(ec.privateKey, 'ES256', claims, { kid: 'ec-1' })), { status: 401, reached: false }, 'the retired key no longer verifies')
    // A JWKS file that cannot be read refuses the reload; the running rules stay.
    await writeFile(join(dir, 'jwks.json'), 'not json')
    const refused = await proxy.app.reload()
    t.equal(refused.ok, false)
    t.match(await probe('/keys/a', await sign(next.privateKey, 'ES256', claims, { kid: 'ec-2' })), { status: 200, reached: true })
  })
})

t.test('WebSocket upgrades pass the same rules', HTTP1_ONLY, async (t) => {
  const ws = await startWsUpstream('ws')
  t.teardown(() => ws.close())
  const proxy = await startProxy(`
listen: { host: 127.0.0.1, port: 0 }
pools:
  ws: { members: [{ url: ${ws.url} }] }
routes:
  - name: live
    match: { path_prefix: / }
    pool: ws
    access:
      - name: token
        jwt: { realm: live, secret: "${SECRET}" }
`)
  t.teardown(() => proxy.close())
  const err = await openWs(`${proxy.url}/socket`).then(() => undefined, (e: { status?: number; headers?: Record<string, string>; body?: string }) => e)
  t.equal(err?.status, 401)
  t.equal(err?.headers?.['www-authenticate'], 'Bearer realm="live"')
  t.equal(err?.body, '401 Unauthorized: access rule token requires a bearer token\n')
  t.equal(ws.upgrades.length, 0, 'the member never saw the refused upgrade')
  t.equal(await metricValue(proxy.app.registry, 'switchyard_websocket_tunnels_total', { route: 'live', result: 'denied' }), 1)
  const token = await new SignJWT({ sub: 'u' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(SECRET))
  const open = await openWs(`${proxy.url}/socket`, { headers: { authorization: `Bearer ${token}` } })
  t.teardown(() => open.ws.terminate())
  t.equal(ws.upgrades.length, 1)
})
