/** Names the generated certificate is valid for: what a browser or curl on this machine dials. */
export const SELF_SIGNED_NAMES = ['localhost'] as const
const SELF_SIGNED_IPS = ['127.0.0.1', '::1'] as const

/**
 * A certificate for localhost, 127.0.0.1 and ::1, valid for a year, made in process (demos,
 * tests, `self_signed: true`). EC P-256: generated in milliseconds where RSA 2048 takes a
 * noticeable pause at start, and every current TLS client accepts it.
 */
export async function generateSelfSigned(now: Date = new Date()): Promise<{ cert: string; key: string }> {
  // Backdated an hour so a client whose clock runs a little behind still accepts it.
  const notBeforeDate = new Date(now.getTime() - 3600_000)
  // Loaded on first use: selfsigned brings @peculiar/x509, pkijs and asn1js (several MiB of heap
  // and code) that a process without `self_signed: true` never needs (issue 15: resident memory).
  const { generate } = await import('selfsigned')
  const notAfterDate = new Date(now.getTime() + 365 * 86400_000)
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    // selfsigned signs with SHA-1 unless told; clients refuse SHA-1 signatures.
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          ...SELF_SIGNED_NAMES.map((value) => ({ type: 2 as const, value })),
          ...SELF_SIGNED_IPS.map((ip) => ({ type: 7 as const, ip }))
        ]
      }
    ]
  })
  return { cert: pems.cert, key: pems.private }
}

/** Where the cluster primary hands its generated certificate to its workers (see shareSelfSigned). */
const SHARED_ENV = 'SWITCHYARD_SELF_SIGNED_PEM'
let shared: Promise<{ cert: string; key: string }> | undefined

/**
 * The process's self-signed certificate: the one the cluster primary made (inherited through
 * the environment, so every worker of `workers: N` serves the same certificate), else one made
 * on first use and shared by every listener of this process.
 */
export function sharedSelfSigned(): Promise<{ cert: string; key: string }> {
  if (shared === undefined) {
    const inherited = process.env[SHARED_ENV]
    shared = inherited !== undefined ? Promise.resolve(JSON.parse(inherited) as { cert: string; key: string }) : generateSelfSigned()
  }
  return shared
}

/** The cluster primary, before forking: workers inherit this process's certificate. */
export async function shareSelfSigned(): Promise<void> {
  process.env[SHARED_ENV] = JSON.stringify(await sharedSelfSigned())
}
