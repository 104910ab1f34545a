import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { constants as h2, createServer as createH2cServer, createSecureServer, type Http2SecureServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type SecureServerOptions, type ServerHttp2Session } from 'node:http2'
import type { Socket } from 'node:net'
import type { Config, ListenerConfig } from '../config/schema.js'
import { MAX_FIELDS } from '../routing/request-edge.js'
import { sniffPreface } from './h2c-preface.js'

export type RequestHandler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void

/** The node server behind one listener: http.Server, https.Server or an HTTP/2 server with HTTP/1.1 beside it. */
export type ListenerServer = HttpServer | Http2SecureServer

/** What the TLS subsystem gives a TLS listener (src/tls/certificate-store.ts). */
export interface TlsOptionsSource {
  serverOptions(): SecureServerOptions
}

/** Called with every HTTP/2 session a listener accepts (limits, metrics, drain). */
export type SessionHook = (session: ServerHttp2Session) => void

/**
 * Builds the server for one listener. The same request handler serves HTTP/1.x and HTTP/2:
 * - TLS with `h2` in alpn: http2.createSecureServer with allowHTTP1, ALPN picks the protocol;
 * - TLS without `h2`: https.createServer;
 * - plain with h2c: an http.Server whose connections are sniffed for the HTTP/2 preface
 *   (RFC 9113 section 3.3, prior knowledge) and handed to an HTTP/2 server when they carry it;
 * - plain: http.Server.
 * HTTP/1.1 connections get the limits of `config.limits` in every case.
 */
export function createListenerServer(listener: ListenerConfig, config: Config, handler: RequestHandler, tls: TlsOptionsSource | undefined, onSession: SessionHook): ListenerServer {
  const limits = config.limits
  const h2settings = {
    maxConcurrentStreams: limits.http2.max_concurrent_streams,
    // The same bound as an HTTP/1.1 head (HPACK counts 32 bytes more per field); Node answers 431 beyond it.
    maxHeaderListSize: limits.max_header_bytes,
    enablePush: false
  }
  const h2options = {
    settings: h2settings,
    // Node's default (128) is below the header fields an HTTP/1 request may carry; twice what we
    // accept, so an over-long list gets the edge's 431 rather than a stream reset from nghttp2.
    maxHeaderListPairs: MAX_FIELDS * 2,
    // A client must not make us hold more than this per session (buffers, HPACK state).
    maxSessionMemory: 16
  }
  let server: ListenerServer
  if (listener.tls !== undefined) {
    const secure = {
      ...tls?.serverOptions(),
      minVersion: listener.tls.min_version,
      ALPNProtocols: listener.tls.alpn,
      // A handshake is part of the request head: the same deadline (Node's default is 120 s).
      handshakeTimeout: limits.headers_timeout_ms > 0 ? limits.headers_timeout_ms : 120000
    }
    if (listener.tls.alpn.includes('h2')) {
      const s = createSecureServer({ ...secure, ...h2options, allowHTTP1: listener.tls.alpn.includes('http/1.1') }, handler as never)
      s.on('session', onSession)
      server = s
    } else {
      server = createHttpsServer({ ...secure, ...http1Options(config) }, handler as never)
    }
  } else {
    const s = createHttpServer(http1Options(config), handler as never)
    if (listener.h2c) {
      const h2c: Http2Server = createH2cServer(h2options, handler as never)
      h2c.on('session', onSession)
      // Every connection is read first: the preface goes to the HTTP/2 server, the rest to HTTP/1.
      const http1 = s.listeners('connection') as ((socket: Socket) => void)[]
      s.removeAllListeners('connection')
      const sniffMs = config.limits.headers_timeout_ms
      s.on('connection', (socket: Socket) => {
        sniffPreface(socket, sniffMs, (isH2) => {
          // The HTTP/2 session reads the bytes put back itself; the HTTP/1 parser needs the stream flowing.
          if (isH2) h2c.emit('connection', socket)
          else {
            for (const l of http1) l.call(s, socket)
            socket.resume()
          }
        })
      })
      // The HTTP/2 side's sessions close with the listener.
      s.on('close', () => h2c.close())
    }
    server = s
  }
  applyHttp1Limits(server, config)
  return server
}

function http1Options(config: Config): { maxHeaderSize: number; insecureHTTPParser: false; requireHostHeader: true; connectionsCheckingInterval: number } {
  const limits = config.limits
  return {
    maxHeaderSize: limits.max_header_bytes,
    insecureHTTPParser: false,
    requireHostHeader: true,
    // Node enforces headers/request timeouts only when it sweeps connections (every 30 s by
    // default): sweep often enough that slow heads and bodies are cut within the limits.
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(Math.min(limits.headers_timeout_ms || 1000, limits.request_timeout_ms || 1000) / 4)))
  }
}

/** The HTTP/1.1 limits, also on an HTTP/2 server's HTTP/1.1 connections (allowHTTP1 reads the same fields). */
function applyHttp1Limits(server: ListenerServer, config: Config): void {
  const limits = config.limits
  const s = server as HttpServer
  s.headersTimeout = limits.headers_timeout_ms
  s.requestTimeout = limits.request_timeout_ms
  s.keepAliveTimeout = limits.keep_alive_timeout_ms
  // One field more than we accept, so an over-long head is refused (431) instead of truncated.
  s.maxHeadersCount = MAX_FIELDS + 1
  ;(s as { maxHeaderSize?: number }).maxHeaderSize = limits.max_header_bytes
  s.setTimeout(0)
  // Node checks headers/request timeouts only when it sweeps connections (every 30 s by default,
  // and an HTTP/2 server's HTTP/1.1 connections get no other setting): sweep often enough that
  // slow heads and bodies are cut within the limits.
  ;(s as { connectionsCheckingInterval?: number }).connectionsCheckingInterval = http1Options(config).connectionsCheckingInterval
  if (limits.max_connections > 0) s.maxConnections = limits.max_connections
}

/** The HTTP/2 error code a session is closed with when its client misbehaves (RFC 9113 section 7). */
export const ENHANCE_YOUR_CALM = h2.NGHTTP2_ENHANCE_YOUR_CALM
