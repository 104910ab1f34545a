import { createSocket, type Socket } from 'node:dgram'
import { lookup } from 'node:dns/promises'
import { formatTarget } from './line-connection.js'
import { formatAnswer, print, readMessages, type ClientIo } from './client-io.js'
import { UDP_MAX_PAYLOAD } from './udp-server.js'
import { decodeMessage } from './upper.js'

export interface UdpClientOptions {
  host: string
  port: number
  /** Wait for an answer this long per attempt. */
  timeoutMs: number
  /** Attempts after the first one; UDP may lose the datagram or its answer. */
  retries: number
  raw: boolean
  /** Send this instead of reading the input. */
  message?: string
  io: ClientIo
}

type Outcome = Buffer | 'timeout' | 'unreachable'

/** Waits for the next datagram, an ICMP "port unreachable" (reported on connected sockets), or the timeout. */
function nextAnswer(socket: Socket, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const done = (outcome: Outcome): void => {
      clearTimeout(timer)
      socket.off('message', onMessage)
      socket.off('error', onError)
      resolve(outcome)
    }
    const onMessage = (msg: Buffer): void => done(msg)
    const onError = (err: NodeJS.ErrnoException): void => done(err.code === 'ECONNREFUSED' ? 'unreachable' : 'timeout')
    const timer = setTimeout(() => done('timeout'), timeoutMs)
    socket.on('message', onMessage)
    socket.on('error', onError)
  })
}

/**
 * One message, on its own socket: a late answer to an earlier message then lands on a closed
 * port instead of being taken for this message's answer (the lab protocol has no request ids).
 * The socket is connected, so only datagrams from the server's address are accepted.
 */
async function exchange(address: string, family: number, port: number, payload: Buffer, opts: UdpClientOptions): Promise<{ answer?: Buffer; attempts: number; unreachable: boolean }> {
  const socket = createSocket(family === 6 ? 'udp6' : 'udp4')
  socket.on('error', () => { /* reported by connect() or by nextAnswer() */ })
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.connect(port, address, () => {
        socket.off('error', reject)
        resolve()
      })
    })
    let unreachable = false
    const attempts = opts.retries + 1
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const answer = nextAnswer(socket, opts.timeoutMs)
      socket.send(payload)
      const outcome = await answer
      if (outcome instanceof Buffer) return { answer: outcome, attempts: attempt, unreachable }
      unreachable ||= outcome === 'unreachable'
    }
    return { attempts, unreachable }
  } finally {
    socket.close()
  }
}

/** The lab's UDP client as a program: returns the exit code (0 answered, 1 no answer or error). */
export async function runUdpClient(opts: UdpClientOptions): Promise<number> {
  const { io } = opts
  const target = formatTarget(opts.host, opts.port)
  let resolved: { address: string; family: number }
  try {
    resolved = await lookup(opts.host)
  } catch (err) {
    io.errors.write(`switchyard udp-client: cannot resolve ${opts.host}: ${(err as NodeJS.ErrnoException).code ?? String(err)}\n`)
    return 1
  }
  for await (const message of readMessages(io, opts.message)) {
    const payload = Buffer.from(message, 'utf8')
    if (payload.length > UDP_MAX_PAYLOAD) {
      io.errors.write(`switchyard udp-client: message too large for one UDP datagram (${payload.length} bytes, limit ${UDP_MAX_PAYLOAD})\n`)
      return 1
    }
    let result: Awaited<ReturnType<typeof exchange>>
    try {
      result = await exchange(resolved.address, resolved.family, opts.port, payload, opts)
    } catch (err) {
      io.errors.write(`switchyard udp-client: cannot send to ${target}: ${(err as Error).message}\n`)
      return 1
    }
    if (result.answer === undefined) {
      const why = result.unreachable ? ' (ICMP port unreachable: is the server running?)' : ''
      io.errors.write(`switchyard udp-client: no answer from ${target} after ${result.attempts} attempt${result.attempts === 1 ? '' : 's'} of ${opts.timeoutMs} ms${why}\n`)
      return 1
    }
    await print(io.output, formatAnswer(decodeMessage(result.answer), opts.raw))
  }
  return 0
}
