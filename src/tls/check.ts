import type { ConfigIssue } from '../config/load.js'
import type { Config } from '../config/schema.js'
import { inspectCertificate } from './certificate-file.js'

/**
 * Reads every listener's certificate and key files as startup would and reports each problem
 * at its place in the config (`listen[0].tls.certificates[1].key`), all together, so
 * `switchyard check` and a failed start name every file to fix at once. Expired certificates
 * are served (with a warning at start), so they are not reported here; neither is a listener
 * with no certificates and no self_signed, which loadConfig already rejects.
 */
export async function checkListenerTls(config: Config, configDir: string): Promise<ConfigIssue[]> {
  const issues: ConfigIssue[] = []
  for (const [i, listener] of config.listen.entries()) {
    const tls = listener.tls
    if (tls === undefined) continue
    for (const [j, entry] of tls.certificates.entries()) {
      const result = await inspectCertificate(entry, { configDir, minVersion: tls.min_version })
      if (!('errors' in result)) continue
      for (const err of result.errors) issues.push({ path: ['listen', i, 'tls', 'certificates', j, err.role ?? 'cert'], message: err.message })
    }
  }
  return issues
}
