import type { Socket } from 'node:net'

/** RFC 9113 section 3.4: what a client with prior knowledge sends first. */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

/**
 * Reads just enough of a new plain connection to tell an HTTP/2 prior-knowledge client (the
 * preface) from an HTTP/1.x one, puts the bytes back, and hands the socket on. A client that
 * sends nothing is left to the HTTP/1 server's timeouts.
 */
export function sniffPreface(socket: Socket, timeoutMs: number, decide: (h2: boolean) => void): void {
  let seen: Buffer = Buffer.alloc(0)
  const done = (): void => {
    clearTimeout(timer)
    socket.off('data', onData)
    socket.off('end', onEnd)
    socket.off('error', onError)
  }
  const onData = (chunk: Buffer): void => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk])
    const n = Math.min(seen.length, H2_PREFACE.length)
    const match = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n))
    if (match && seen.length < H2_PREFACE.length) return
    done()
    socket.pause()
    socket.unshift(seen)
    decide(match)
  }
  // Closed before the first full line: let the HTTP/1 server see (and count) it.
  const onEnd = (): void => {
    done()
    if (seen.length > 0) socket.unshift(seen)
    decide(false)
  }
  // Until a server owns the socket, its errors (a reset) are ours to absorb.
  const onError = (): void => {
    done()
    socket.destroy()
  }
  socket.on('data', onData)
  socket.once('end', onEnd)
  socket.on('error', onError)
  // The head timeout of the HTTP/1 server applies from the first byte: nothing (or half a
  // preface) for that long closes the connection.
  const timer = timeoutMs > 0 ? setTimeout(() => { done(); socket.destroy() }, timeoutMs) : undefined
}

/**
 * The answer to a prior-knowledge client on a listener without h2c: a SETTINGS frame (the
 * server preface) and GOAWAY with HTTP_1_1_REQUIRED (RFC 9113 sections 3.4, 6.8 and 7), so the
 * client reports why instead of a broken pipe.
 */
export function http11RequiredFrames(debug: string): Buffer {
  const settings = Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0])
  const text = Buffer.from(debug, 'utf8')
  const goaway = Buffer.alloc(9 + 8 + text.length)
  goaway.writeUIntBE(8 + text.length, 0, 3)
  goaway[3] = 0x7
  goaway.writeUInt32BE(0, 5)
  goaway.writeUInt32BE(0, 9)
  goaway.writeUInt32BE(0xd, 13)
  text.copy(goaway, 17)
  return Buffer.concat([settings, goaway])
}
