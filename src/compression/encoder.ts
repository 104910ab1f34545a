/**
 * The compressors, from node:zlib: a stream per compressed answer (the client writer feeds it
 * and honours its backpressure), and a one-shot compression of a stored body (in the thread
 * pool, off the event loop) for the cache's compressed copies. zstd exists in node:zlib from
 * Node 22.15 / 23.8 only; on older Node it is simply not offered.
 */
import zlib from 'node:zlib'
import type { Transform } from 'node:stream'
import type { Coding } from './negotiate.js'

/** The levels an encoder is built with (a route's CompressPolicy). */
export interface EncoderLevels {
  readonly brotliQuality: number
  readonly gzipLevel: number
  readonly zstdLevel: number
}

type ZstdOptions = { params?: Record<number, number> }
/** node:zlib as it is on Node >= 22.15 (the types of Node 20 do not know zstd). */
interface ZstdZlib {
  createZstdCompress?: (opts?: ZstdOptions) => Transform
  zstdCompress?: (buf: Buffer, opts: ZstdOptions, cb: (err: Error | null, out: Buffer) => void) => void
}
const ZSTD = zlib as unknown as ZstdZlib
const C = zlib.constants as typeof zlib.constants & Record<string, number | undefined>

let available: ReadonlySet<Coding> | undefined

/** The codings this Node can produce. */
export function availableCodings(): ReadonlySet<Coding> {
  available ??= new Set<Coding>(typeof ZSTD.createZstdCompress === 'function' && typeof ZSTD.zstdCompress === 'function' ? ['br', 'zstd', 'gzip'] : ['br', 'gzip'])
  return available
}

/**
 * Window sizes for a body of known length (nginx's gzip filter does the same): a compressor's
 * memory is mostly its window, and a 2 KiB answer gains nothing from a 32 KiB (gzip) or 4 MiB
 * (brotli) one. Unknown length: the library defaults.
 */
function windowBits(size: number | undefined, min: number, max: number): number | undefined {
  if (size === undefined) return undefined
  let bits = min
  while (bits < max && (1 << bits) < size + 262) bits++
  return bits
}

function brotliParams(levels: EncoderLevels, size: number | undefined): Record<number, number> {
  const params: Record<number, number> = { [zlib.constants.BROTLI_PARAM_QUALITY]: levels.brotliQuality }
  if (size !== undefined) {
    params[zlib.constants.BROTLI_PARAM_SIZE_HINT] = size
    params[zlib.constants.BROTLI_PARAM_LGWIN] = windowBits(size, 10, 22) as number
  }
  return params
}

function gzipOptions(levels: EncoderLevels, size: number | undefined): zlib.ZlibOptions {
  const bits = windowBits(size, 9, 15)
  return bits === undefined ? { level: levels.gzipLevel } : { level: levels.gzipLevel, windowBits: bits, memLevel: Math.max(1, Math.min(8, bits - 7)) }
}

function zstdOptions(levels: EncoderLevels): ZstdOptions {
  return { params: { [C.ZSTD_c_compressionLevel as number]: levels.zstdLevel } }
}

/** A compressing stream for one answer; `size` is the body's length when known. */
export function createEncoder(coding: Coding, levels: EncoderLevels, size: number | undefined): Transform {
  switch (coding) {
    case 'br': return zlib.createBrotliCompress({ params: brotliParams(levels, size) })
    case 'gzip': return zlib.createGzip(gzipOptions(levels, size))
    case 'zstd': {
      const create = ZSTD.createZstdCompress
      if (create === undefined) throw new Error('zstd is not available in this Node version')
      return create(zstdOptions(levels))
    }
  }
}

/**
 * Pushes out what the encoder holds so far as a complete block the client can decode now,
 * without ending the stream (Z_SYNC_FLUSH; brotli's and zstd's flush operations).
 */
export function flushEncoder(encoder: Transform, coding: Coding): void {
  const kind = coding === 'gzip' ? zlib.constants.Z_SYNC_FLUSH : coding === 'br' ? zlib.constants.BROTLI_OPERATION_FLUSH : C.ZSTD_e_flush
  ;(encoder as unknown as { flush(kind?: number): void }).flush(kind)
}

/** A whole body compressed at once, in the thread pool (the cache's compressed copies). */
export function encodeBody(coding: Coding, levels: EncoderLevels, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, out: Buffer): void => { if (err !== null) reject(err); else resolve(out) }
    switch (coding) {
      case 'br': zlib.brotliCompress(body, { params: brotliParams(levels, body.length) }, done); return
      case 'gzip': zlib.gzip(body, gzipOptions(levels, body.length), done); return
      case 'zstd': {
        const compress = ZSTD.zstdCompress
        if (compress === undefined) { reject(new Error('zstd is not available in this Node version')); return }
        compress(body, zstdOptions(levels), done)
      }
    }
  })
}
