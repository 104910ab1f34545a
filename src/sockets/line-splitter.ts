import { incompleteUtf8Tail } from './upper.js'

/**
 * Newline framing for the TCP programs: a message is the bytes up to '\n' (0x0A), with one
 * trailing '\r' stripped so telnet/netcat -C clients work. Splitting on the byte is safe for
 * UTF-8: 0x0A never occurs inside a multi-byte sequence, so every line decodes on its own.
 */
export interface SplitResult {
  /** Complete lines, without their terminator. */
  lines: Buffer[]
  /** A line (complete or still arriving) is longer than the limit; later bytes were not looked at. */
  tooLong: boolean
}

const LF = 0x0a
const CR = 0x0d

function stripCR(line: Buffer): Buffer {
  return line.length > 0 && line[line.length - 1] === CR ? line.subarray(0, line.length - 1) : line
}

export class LineSplitter {
  private parts: Buffer[] = []
  private bytes = 0

  /** maxLineBytes: the longest line accepted, terminator excluded. Memory held is bounded by it. */
  constructor(readonly maxLineBytes: number) {}

  /** Bytes of the line still waiting for its '\n'. */
  get pendingBytes(): number {
    return this.bytes
  }

  push(chunk: Buffer): SplitResult {
    const lines: Buffer[] = []
    let start = 0
    for (let nl = chunk.indexOf(LF, start); nl !== -1; nl = chunk.indexOf(LF, start)) {
      const piece = chunk.subarray(start, nl)
      const line = stripCR(this.bytes === 0 ? piece : Buffer.concat([...this.parts, piece]))
      this.parts = []
      this.bytes = 0
      if (line.length > this.maxLineBytes) return { lines, tooLong: true }
      lines.push(line)
      start = nl + 1
    }
    if (start < chunk.length) {
      // Copy the tail: a small view would otherwise keep the whole read buffer alive.
      const rest = Buffer.from(chunk.subarray(start))
      this.parts.push(rest)
      this.bytes += rest.length
      // +1: the line may still end in '\r\n', and the '\r' does not count.
      if (this.bytes > this.maxLineBytes + 1) return { lines, tooLong: true }
    }
    return { lines, tooLong: false }
  }

  /**
   * Takes the unterminated rest as a line (the peer half-closed, or went quiet): undefined when
   * nothing is pending, 'too-long' when it is over the limit.
   */
  takePending(): Buffer | 'too-long' | undefined {
    if (this.bytes === 0) return undefined
    const line = stripCR(Buffer.concat(this.parts))
    this.parts = []
    this.bytes = 0
    return line.length > this.maxLineBytes ? 'too-long' : line
  }

  /**
   * Like takePending, for a line taken before its '\n' arrived (the peer went quiet): a UTF-8
   * sequence at the end that is incomplete but valid so far stays pending, so a character whose
   * bytes arrive apart is decoded whole with the bytes after it instead of becoming U+FFFD.
   * undefined when nothing, or only such a partial character, is pending.
   */
  takeFlushable(): Buffer | 'too-long' | undefined {
    if (this.bytes === 0) return undefined
    const all = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts)
    const keep = incompleteUtf8Tail(all)
    if (keep === 0) return this.takePending()
    this.parts = [all]
    if (keep === all.length) return undefined
    // The head ends before a non-'\n' byte, so a '\r' at its end is text, not a CRLF's.
    const line = Buffer.from(all.subarray(0, all.length - keep))
    this.parts = [Buffer.from(all.subarray(all.length - keep))]
    this.bytes = keep
    return line.length > this.maxLineBytes ? 'too-long' : line
  }
}
