/**
 * The lab's transform: the server decodes the bytes it received as UTF-8, upper-cases the text
 * (or echoes it) and encodes the answer as UTF-8 again.
 */

export type TransformMode = 'upper' | 'echo'

export const TRANSFORM_MODES: readonly TransformMode[] = ['upper', 'echo']

export function isTransformMode(value: string): value is TransformMode {
  return (TRANSFORM_MODES as readonly string[]).includes(value)
}

// Invalid UTF-8 is decoded with U+FFFD replacement characters (WHATWG Encoding "replacement"
// error mode, TextDecoder without `fatal`) instead of being rejected: the lab's contract is
// "every message gets an answer", a network client cannot fix its bytes after the fact, and
// U+FFFD makes the damage visible in the answer ('h\xffi' -> 'H\uFFFDI'), where Python's
// `.decode()` in the lab would have crashed the server. Consequence: 'echo' is not byte-exact
// for invalid input either. `ignoreBOM` keeps a leading U+FEFF as text rather than eating it,
// so an echo of a BOM-prefixed line keeps its BOM.
const decoder = new TextDecoder('utf-8', { ignoreBOM: true })

/** Decodes one whole message (never a fragment: callers split at byte 0x0A or take a whole datagram). */
export function decodeMessage(bytes: Uint8Array): string {
  return decoder.decode(bytes)
}

/**
 * `toUpperCase` (not `toLocaleUpperCase`) applies Unicode's default full case mapping whatever
 * the host locale is, so answers do not depend on the server's environment. Full mapping can
 * lengthen text: 'ß' -> 'SS', 'ŉ' -> 'ʼN', 'ΐ' (2 bytes) -> 'Ϊ́' (6 bytes); the UDP server caps
 * reply sizes for that reason.
 */
export function transformText(text: string, mode: TransformMode): string {
  switch (mode) {
    case 'upper': return text.toUpperCase()
    case 'echo': return text
  }
}

/** Bytes in, answer bytes out (UTF-8). */
export function transformMessage(bytes: Uint8Array, mode: TransformMode): Buffer {
  return Buffer.from(transformText(decodeMessage(bytes), mode), 'utf8')
}
