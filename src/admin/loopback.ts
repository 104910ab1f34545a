/** Whether a listen address only accepts local connections (admin calls need no token there). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.')
}
