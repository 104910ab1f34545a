/**
 * Server names to certificates, the way SNI is answered: an exact name first (case-insensitive),
 * then a `*.example.com` wildcard, which covers exactly one more label (RFC 6125 section 6.4.3:
 * `a.example.com`, not `example.com` nor `a.b.example.com`), else the fallback.
 * Built whole and never changed, so a reload swaps one reference.
 */
export class SniTable<T> {
  readonly #exact = new Map<string, T>()
  /** Keyed by the part after `*.`. */
  readonly #wildcard = new Map<string, T>()
  readonly #fallback: T

  /** Earlier entries win a name listed twice, as the config's order promises. */
  constructor(entries: Iterable<{ names: readonly string[]; value: T }>, fallback: T) {
    for (const { names, value } of entries) {
      for (const raw of names) {
        const name = normalizeServerName(raw)
        const [map, key] = name.startsWith('*.') ? [this.#wildcard, name.slice(2)] : [this.#exact, name]
        if (key !== '' && !map.has(key)) map.set(key, value)
      }
    }
    this.#fallback = fallback
  }

  lookup(servername: string): T {
    const name = normalizeServerName(servername)
    const exact = this.#exact.get(name)
    if (exact !== undefined) return exact
    const dot = name.indexOf('.')
    if (dot > 0) {
      const wild = this.#wildcard.get(name.slice(dot + 1))
      if (wild !== undefined) return wild
    }
    return this.#fallback
  }
}

/** DNS names compare case-insensitively; a trailing dot (fully qualified) names the same host. */
export function normalizeServerName(name: string): string {
  const lower = name.toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}
