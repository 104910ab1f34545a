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
 * How many bytes at the end of `bytes` are the start of a UTF-8 sequence that is still
 * incomplete but valid so far (0 to 3): the bytes a stream reader must keep for the next read
 * instead of decoding them now, where they would become U+FFFD. The ranges are the WHATWG UTF-8
 * decoder's (Encoding Standard, section 4.1): C2-DF, E0-EF and F0-F4 lead 2, 3 and 4 byte
 * sequences, with a narrower second byte after E0 (A0-BF), ED (80-9F), F0 (90-BF) and F4
 * (80-8F). Anything that is already invalid (a stray continuation byte, C0, F5-FF, a bad second
 * byte) gives 0: waiting would not make it valid, so it is decoded (as U+FFFD) right away.
 */
export function incompleteUtf8Tail(bytes: Uint8Array): number {
  const n = bytes.length
  for (let back = 1; back <= Math.min(3, n); back++) {
    const lead = bytes[n - back]
    if (lead >= 0x80 && lead <= 0xbf) continue // a continuation byte: its lead is further back
    const need = lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0
    if (need <= back) return 0 // ASCII, an invalid lead, a complete sequence, or stray continuations after one
    if (back >= 2) {
      const second = bytes[n - back + 1]
      const [lo, hi] = lead === 0xe0 ? [0xa0, 0xbf] : lead === 0xed ? [0x80, 0x9f] : lead === 0xf0 ? [0x90, 0xbf] : lead === 0xf4 ? [0x80, 0x8f] : [0x80, 0xbf]
      if (second < lo || second > hi) return 0
    }
    return back
  }
  return 0
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
