/** Which file of a certificate entry a problem is about (`certificates[j].cert` or `.key`). */
export type TlsFileRole = 'cert' | 'key'

/**
 * A listener's TLS configuration cannot be served: a certificate or key file is missing,
 * unreadable, not PEM, or the pair does not match. The message names the file, so startup,
 * `switchyard check` and a failed reload all say which file to fix.
 */
export class TlsConfigError extends Error {
  /** The file at fault (resolved path); undefined when no file is (`certificates: []`). */
  readonly file: string | undefined
  readonly role: TlsFileRole | undefined

  constructor(message: string, opts: { file?: string; role?: TlsFileRole; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'TlsConfigError'
    this.file = opts.file
    this.role = opts.role
  }
}
