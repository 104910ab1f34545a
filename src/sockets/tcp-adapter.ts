import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { pino, type Logger } from 'pino'
import { Counter, Gauge, Registry } from 'prom-client'
import { TargetError } from './line-connection.js'
import { PoolFullError, TcpLinePool } from './tcp-line-pool.js'

export interface TcpAdapterOptions {
  /** Default 8081; 0 picks a free port. */
  port?: number
  /** Default '127.0.0.1'. */
  host?: string
  /** The TCP line server to use as the upstream. */
  target: { host: string; port: number }
  /** Budget for one answer from the target, connection wait included (default 5000); then 504. */
  timeoutMs?: number
  /** Persistent connections to the target (default 8). */
  poolSize?: number
  /** Largest text accepted (default 65536, the TCP server's line limit); then 413 (POST) or 414 (GET). */
  maxBodyBytes?: number
  registry?: Registry
  logger?: Logger
}

export interface TcpAdapter {
  port: number
  address: string
  url: string
  registry: Registry
  pool: TcpLinePool
  close(): Promise<void>
}

const TEXT = 'text/plain; charset=utf-8'

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
  }
}

/** Reads the body up to `limit` bytes; beyond it rejects with 413 without buffering more. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = new HttpError(413, `413 Content Too Large: the limit is ${limit} bytes\n`, { connection: 'close' })
  if (Number(req.headers['content-length'] ?? 0) > limit) {
    req.resume() // drain rather than leave unread bytes that would turn our close into a reset
    return Promise.reject(tooLarge)
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > limit) {
        req.off('data', onData)
        req.resume() // keep draining so our 413 is not lost to a TCP reset
        reject(tooLarge)
        return
      }
      chunks.push(chunk)
    }
    req.on('data', onData)
    req.once('end', () => resolve(Buffer.concat(chunks)))
    req.once('error', reject)
  })
}

/** A strong validator for the answer: equal answers, equal ETags, whichever adapter served them. */
function etagOf(body: string): string {
  return `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`
}

/** If-None-Match uses the weak comparison (RFC 9110 section 13.1.2): W/ prefixes are ignored. */
function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  return header.split(',').some((tag) => {
    const t = tag.trim()
    return t === '*' || t.replace(/^W\//, '') === etag
  })
}

/** One line of text: the TCP protocol's frame separator cannot be part of a message. */
function singleLine(text: string): string {
  if (text.includes('\n')) throw new HttpError(400, '400 Bad Request: the text must be a single line (no line feed)\n')
  return text
}

/**
 * `switchyard tcp-adapter`: makes the TCP upper-case server an HTTP upstream, so it can sit
 * behind the proxy, its balancer and its cache. GET answers are cacheable (the transform is a
 * pure function of the text), POST answers are not (RFC 9110 section 9.3.3: only with explicit
 * freshness, and caches key on the URL, not the body).
 */
export async function startTcpAdapter(opts: TcpAdapterOptions): Promise<TcpAdapter> {
  const log = opts.logger ?? pino({ level: 'silent' })
  const registry = opts.registry ?? new Registry()
  const maxBody = opts.maxBodyBytes ?? 65536
  const pool = new TcpLinePool({ host: opts.target.host, port: opts.target.port, size: opts.poolSize, timeoutMs: opts.timeoutMs })
  const requests = new Counter({ name: 'switchyard_tcp_adapter_requests_total', help: 'HTTP requests answered by the TCP adapter, by method and status code.', labelNames: ['method', 'code'] as const, registers: [registry] })
  // A gauge for what is open now and a counter for what was ever opened: one family mixing the
  // two (state="open"/"opened") could not be typed right, and rate() needs a counter.
  new Gauge({
    name: 'switchyard_tcp_adapter_target_connections',
    help: 'Connections from the TCP adapter to its target open (or opening) now.',
    registers: [registry],
    collect() { this.set(pool.connections) }
  })
  let counted = 0
  new Counter({
    name: 'switchyard_tcp_adapter_target_connections_opened_total',
    help: 'Connections the TCP adapter opened to its target (a replaced connection counts again).',
    registers: [registry],
    collect() {
      const opened = pool.opened
      if (opened > counted) this.inc(opened - counted)
      counted = opened
    }
  })

  const send = (req: IncomingMessage, res: ServerResponse, status: number, body: string, headers: Record<string, string>): void => {
    requests.inc({ method: ['GET', 'HEAD', 'POST'].includes(req.method ?? '') ? String(req.method) : 'other', code: String(status) })
    if (res.destroyed) return
    if (status === 304) {
      res.writeHead(304, headers).end() // RFC 9110 section 15.4.5: no body, no content headers
      return
    }
    res.writeHead(status, { 'content-type': TEXT, 'content-length': String(Buffer.byteLength(body)), ...headers })
    res.end(body)
  }

  const askTarget = async (text: string): Promise<string> => {
    try {
      return await pool.request(text)
    } catch (err) {
      if (err instanceof PoolFullError) throw new HttpError(503, `503 Service Unavailable: ${err.message}\n`, { 'retry-after': '1' })
      if (!(err instanceof TargetError)) throw err
      log.warn({ target: pool.target, kind: err.kind, err: err.message }, 'tcp target failed')
      switch (err.kind) {
        case 'connect_timeout':
        case 'timeout': throw new HttpError(504, `504 Gateway Timeout: TCP target ${pool.target} did not answer within ${pool.timeoutMs} ms\n`)
        case 'refused': throw new HttpError(502, `502 Bad Gateway: TCP target ${pool.target} refused the connection\n`)
        // The target is at its connection limit (or ours, per address): busy, not broken.
        case 'overloaded': throw new HttpError(503, `503 Service Unavailable: ${err.message}\n`, { 'retry-after': '1' })
        case 'reset': throw new HttpError(502, `502 Bad Gateway: TCP target ${pool.target} reset the connection\n`)
        case 'closed': throw new HttpError(502, `502 Bad Gateway: TCP target ${pool.target} closed the connection before answering\n`)
        default: throw new HttpError(502, `502 Bad Gateway: ${err.message}\n`)
      }
    }
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://adapter.invalid')
    const method = req.method ?? 'GET'
    if (url.pathname === '/health') {
      if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, '405 Method Not Allowed\n', { allow: 'GET, HEAD' })
      return send(req, res, 200, 'ok\n', { 'cache-control': 'no-store' })
    }
    if (url.pathname !== '/upper') throw new HttpError(404, `404 Not Found: try GET /upper?text=hello or POST /upper\n`)
    if (method === 'GET' || method === 'HEAD') {
      const text = url.searchParams.get('text')
      if (text === null) throw new HttpError(400, '400 Bad Request: missing ?text=\n')
      if (Buffer.byteLength(text) > maxBody) throw new HttpError(414, `414 URI Too Long: the text limit is ${maxBody} bytes, POST it instead\n`)
      const body = `${await askTarget(singleLine(text))}\n`
      const etag = etagOf(body)
      const headers = { 'cache-control': 'public, max-age=60', etag }
      return send(req, res, matchesIfNoneMatch(req.headers['if-none-match'], etag) ? 304 : 200, body, headers)
    }
    if (method === 'POST') {
      // One trailing newline is the end of the line (curl --data-binary @file), not a second message.
      const text = (await readBody(req, maxBody)).toString('utf8').replace(/\r?\n$/, '')
      const body = `${await askTarget(singleLine(text))}\n`
      return send(req, res, 200, body, { 'cache-control': 'no-store' })
    }
    throw new HttpError(405, '405 Method Not Allowed\n', { allow: 'GET, HEAD, POST' })
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) return send(req, res, err.status, err.message, { 'cache-control': 'no-store', ...err.headers })
      log.error({ err }, 'tcp adapter: unexpected error')
      send(req, res, 500, '500 Internal Server Error\n', { 'cache-control': 'no-store' })
    })
  })
  server.on('error', (err) => log.error({ err }, 'tcp adapter server error'))

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 8081, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const bound = server.address()
  if (bound === null || typeof bound === 'string') throw new Error('tcp adapter: expected an IP address')
  const hostPart = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address
  log.info({ address: bound.address, port: bound.port, target: pool.target, poolSize: pool.size, timeoutMs: pool.timeoutMs }, 'tcp adapter listening')

  let closed: Promise<void> | undefined
  return {
    port: bound.port,
    address: bound.address,
    url: `http://${hostPart}:${bound.port}`,
    registry,
    pool,
    close: () => (closed ??= new Promise<void>((resolve) => {
      pool.close()
      server.close(() => resolve())
      server.closeAllConnections()
    }))
  }
}
