import { createServer, type Socket } from 'node:net'
import t from 'tap'
import { proxyHeaderV1, proxyHeaderV2, V2_SIGNATURE } from '../../src/l4/proxy-protocol.js'
import { startL4 } from './l4-setup.js'
import { tcpProbe, type Teardown } from '../fixtures/sockets.js'

t.test('v1: TCP4, TCP6, IPv4-mapped addresses sent as IPv4, UNKNOWN', async (t) => {
  t.equal(proxyHeaderV1({ sourceAddress: '192.0.2.1', sourcePort: 56324, destinationAddress: '198.51.100.1', destinationPort: 443 }).toString(), 'PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n')
  t.equal(proxyHeaderV1({ sourceAddress: '2001:db8::1', sourcePort: 1, destinationAddress: '::1', destinationPort: 2 }).toString(), 'PROXY TCP6 2001:db8::1 ::1 1 2\r\n')
  t.equal(proxyHeaderV1({ sourceAddress: '::ffff:10.0.0.1', sourcePort: 1, destinationAddress: '::ffff:10.0.0.2', destinationPort: 2 }).toString(), 'PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n')
  t.equal(proxyHeaderV1({ sourceAddress: undefined, sourcePort: undefined, destinationAddress: '10.0.0.2', destinationPort: 2 }).toString(), 'PROXY UNKNOWN\r\n')
})

t.test('v2: signature, version/command, family, length, addresses and ports in network order', async (t) => {
  const h = proxyHeaderV2({ sourceAddress: '192.0.2.1', sourcePort: 56324, destinationAddress: '198.51.100.1', destinationPort: 443 })
  t.same(h.subarray(0, 12), V2_SIGNATURE)
  t.equal(h[12], 0x21, 'version 2, PROXY')
  t.equal(h[13], 0x11, 'TCP over IPv4')
  t.equal(h.readUInt16BE(14), 12)
  t.same([...h.subarray(16, 20)], [192, 0, 2, 1])
  t.same([...h.subarray(20, 24)], [198, 51, 100, 1])
  t.equal(h.readUInt16BE(24), 56324)
  t.equal(h.readUInt16BE(26), 443)
  t.equal(h.length, 28)
  const mixed = proxyHeaderV2({ sourceAddress: '2001:db8::ff:1', sourcePort: 1, destinationAddress: '::ffff:1.2.3.4', destinationPort: 2 })
  t.equal(mixed[12], 0x20, 'addresses of two families: LOCAL, no addresses')
  const v6 = proxyHeaderV2({ sourceAddress: '2001:db8::ff:1', sourcePort: 1, destinationAddress: '::1', destinationPort: 2 })
  t.equal(v6[13], 0x21, 'TCP over IPv6')
  t.equal(v6.readUInt16BE(14), 36)
  t.equal(v6.subarray(16, 32).toString('hex'), '20010db8000000000000000000ff0001')
  t.equal(v6.subarray(32, 48).toString('hex'), '00000000000000000000000000000001')
  const local = proxyHeaderV2({ sourceAddress: undefined, sourcePort: undefined, destinationAddress: undefined, destinationPort: undefined })
  t.equal(local[12], 0x20, 'LOCAL command when the addresses are unknown')
  t.equal(local.length, 16)
})

/** A member that records the raw bytes of its connection and answers "ok\n" once it has them. */
async function recorder(t: Teardown): Promise<{ port: number; bytes: () => Buffer }> {
  const chunks: Buffer[] = []
  const sockets: Socket[] = []
  const server = createServer((s) => {
    sockets.push(s)
    s.on('data', (c: Buffer) => { chunks.push(c); if (Buffer.concat(chunks).includes('hello\n')) s.write('ok\n') })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of sockets) s.destroy(); server.close() })
  return { port: (server.address() as { port: number }).port, bytes: () => Buffer.concat(chunks) }
}

for (const version of ['v1', 'v2'] as const) {
  t.test(`proxy_protocol: ${version} is sent to the member before the client's bytes`, async (t) => {
    const member = await recorder(t)
    const l4 = await startL4(t, `
listen:
  - { host: 127.0.0.1, port: 0 }
  - { name: pp, host: 127.0.0.1, port: 0, protocol: tcp, pool: pp, tcp: { proxy_protocol: ${version} } }
pools:
  pp: { members: [{ url: "tcp://127.0.0.1:${member.port}" }] }
  web: { members: [{ url: "http://127.0.0.1:1" }] }
routes:
  - { name: default, match: { path_prefix: / }, pool: web }
`)
    const p = await tcpProbe(l4.port())
    t.teardown(() => p.socket.destroy())
    p.socket.write('hello\n')
    await p.waitForText('ok\n')
    const got = member.bytes()
    const clientPort = p.socket.localPort as number
    if (version === 'v1') {
      t.equal(got.toString(), `PROXY TCP4 127.0.0.1 127.0.0.1 ${clientPort} ${l4.port()}\r\nhello\n`)
    } else {
      t.same(got.subarray(0, 12), V2_SIGNATURE)
      t.equal(got.readUInt16BE(24), clientPort, 'the client port')
      t.equal(got.readUInt16BE(26), l4.port(), 'the listener port')
      t.equal(got.subarray(28).toString(), 'hello\n')
    }
  })
}
