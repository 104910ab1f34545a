/**
 * Named proxy errors and the one place that maps upstream failures to HTTP statuses
 * (DESIGN.md habit 6): refused/reset -> 502, none available -> 503, timeout -> 504.
 */

export type UpstreamErrorKind =
  | 'refused'
  | 'reset'
  | 'connect_timeout'
  | 'timeout'
  | 'dns'
  | 'protocol'
  | 'no_member'
  | 'other'

export interface ClassifiedError {
  kind: UpstreamErrorKind
  status: 502 | 503 | 504
  /** One short human sentence, safe to show a client (no addresses, no stack). */
  reason: string
}

const BY_CODE: Record<string, ClassifiedError> = {
  ECONNREFUSED: { kind: 'refused', status: 502, reason: 'upstream refused the connection' },
  ECONNRESET: { kind: 'reset', status: 502, reason: 'upstream reset the connection' },
  EPIPE: { kind: 'reset', status: 502, reason: 'upstream closed the connection' },
  UND_ERR_SOCKET: { kind: 'reset', status: 502, reason: 'upstream closed the connection' },
  UND_ERR_CLOSED: { kind: 'reset', status: 502, reason: 'upstream closed the connection' },
  EHOSTUNREACH: { kind: 'refused', status: 502, reason: 'upstream host unreachable' },
  ENETUNREACH: { kind: 'refused', status: 502, reason: 'upstream network unreachable' },
  UND_ERR_CONNECT_TIMEOUT: { kind: 'connect_timeout', status: 504, reason: 'timed out connecting to upstream' },
  UND_ERR_HEADERS_TIMEOUT: { kind: 'timeout', status: 504, reason: 'upstream did not answer in time' },
  UND_ERR_BODY_TIMEOUT: { kind: 'timeout', status: 504, reason: 'upstream stalled while sending its body' },
  FST_REPLY_FROM_GATEWAY_TIMEOUT: { kind: 'timeout', status: 504, reason: 'upstream did not answer in time' },
  ETIMEDOUT: { kind: 'connect_timeout', status: 504, reason: 'timed out connecting to upstream' },
  ENOTFOUND: { kind: 'dns', status: 502, reason: 'upstream host name did not resolve' },
  EAI_AGAIN: { kind: 'dns', status: 502, reason: 'upstream host name did not resolve' },
  UND_ERR_INFO: { kind: 'protocol', status: 502, reason: 'upstream sent an invalid response' },
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: { kind: 'protocol', status: 502, reason: 'upstream sent an invalid response' },
  UND_ERR_RES_EXCEEDED_MAX_SIZE: { kind: 'protocol', status: 502, reason: 'upstream response too large' }
}

const OTHER: ClassifiedError = { kind: 'other', status: 502, reason: 'upstream request failed' }
const PROTOCOL: ClassifiedError = { kind: 'protocol', status: 502, reason: 'upstream sent an invalid response' }
export const NO_MEMBER: ClassifiedError = { kind: 'no_member', status: 503, reason: 'no upstream available' }

interface WithCode { code?: unknown; cause?: unknown }

/** Walks the cause chain (wrapped undici errors) and maps the first known code. */
export function classifyUpstreamError(err: unknown): ClassifiedError {
  let cur: unknown = err
  for (let depth = 0; depth < 5 && cur != null && typeof cur === 'object'; depth++) {
    const code = (cur as WithCode).code
    // undici's HTTPParserError has no code when llhttp gave none.
    if ((cur as { name?: unknown }).name === 'HTTPParserError') return PROTOCOL
    if (typeof code === 'string') {
      const hit = BY_CODE[code]
      if (hit !== undefined) return hit
      if (code.startsWith('HPE_')) return PROTOCOL
    }
    cur = (cur as WithCode).cause
  }
  return OTHER
}

/** The short plain body a client sees for a failed upstream exchange. */
export function upstreamErrorBody(pool: string, e: ClassifiedError): string {
  return `${e.status} ${e.status === 503 ? 'Service Unavailable' : e.status === 504 ? 'Gateway Timeout' : 'Bad Gateway'}: pool ${pool}: ${e.reason}\n`
}
