/**
 * Access log lines from an AccessRecord: `combined` (nginx/Apache, byte for byte the format log
 * analysers read), `extended` (combined, then key="value" fields, as an nginx custom
 * log_format appends variables) and `json` (one object a line). Each is built as one string,
 * with no intermediate objects; the time text is computed once per second.
 */
import type { AccessLogFormat } from '../config/schema.js'
import type { AccessRecord } from './access-record.js'
import { capturedValue } from './header-capture.js'

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
/** Characters written as \xHH in a combined line, as nginx escapes them (escape=default). */
// eslint-disable-next-line no-control-regex -- control bytes are exactly what must be escaped
const UNSAFE = /["\\\x00-\x1f\x7f-\uffff]/
// eslint-disable-next-line no-control-regex -- as above
const UNSAFE_ALL = /["\\\x00-\x1f\x7f-\uffff]/g

const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n))
const pad3 = (n: number): string => (n < 10 ? `00${n}` : n < 100 ? `0${n}` : String(n))

function hexEscape(ch: string): string {
  const code = ch.charCodeAt(0)
  // Node's parser hands bytes as latin1 characters; anything wider is written as its UTF-8 bytes.
  if (code <= 0xff) return `\\x${code.toString(16).toUpperCase().padStart(2, '0')}`
  let out = ''
  for (const b of Buffer.from(ch, 'utf8')) out += `\\x${b.toString(16).toUpperCase().padStart(2, '0')}`
  return out
}

/** A combined-line field: "-" when absent, quotes, backslashes and control bytes escaped. */
export function textField(s: string | undefined): string {
  if (s === undefined || s === '') return '-'
  return UNSAFE.test(s) ? s.replace(UNSAFE_ALL, hexEscape) : s
}

const ms = (n: number): number => Math.round(n * 1000) / 1000

function header(h: AccessRecord['requestHeaders'], name: string): string | undefined {
  const v = h?.[name]
  return Array.isArray(v) ? v[0] : v
}

export type LineFormatter = (r: AccessRecord, redact: ReadonlySet<string>) => string

/** The formatter for `format`: a function that turns a record into one line ending in "\n". */
export function createLineFormatter(format: AccessLogFormat): LineFormatter {
  const clock = new TimeText()
  switch (format) {
    case 'combined': return (r) => combined(r, clock) + '\n'
    case 'extended': return (r, redact) => combined(r, clock) + extended(r, redact) + '\n'
    case 'json': return (r, redact) => json(r, clock, redact)
  }
}

/** `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"` */
function combined(r: AccessRecord, clock: TimeText): string {
  const h = r.requestHeaders
  return `${textField(r.client)} - ${textField(r.user)} [${clock.local(r.time)}] "${textField(r.method)} ${textField(r.target)} ${r.protocol}" ${r.status} ${r.bytesOut} "${textField(header(h, 'referer'))}" "${textField(header(h, 'user-agent'))}"`
}

/** The fields combined lacks, appended as nginx custom formats do: numbers bare, text quoted, "-" when absent. */
function extended(r: AccessRecord, redact: ReadonlySet<string>): string {
  let s = ` request_id="${textField(r.requestId)}" route="${textField(r.route)}" pool="${textField(r.pool)}" member="${textField(r.member)}" variant="${textField(r.variant)}" cache="${textField(r.cache)}" bytes_in=${r.bytesIn} duration_ms=${ms(r.durationMs)} upstream_ms=${r.upstreamMs === undefined ? '-' : ms(r.upstreamMs)} firewall="${textField(r.firewall)}" anonymous=${r.anonymous ? 1 : 0}`
  if (r.upgrade !== undefined) s += ` upgrade="${textField(r.upgrade)}"`
  const c = r.capture
  if (c !== undefined) {
    for (const name of c.request) s += ` req.${name}="${textField(capturedValue(name, r.requestHeaders?.[name], redact))}"`
    for (const name of c.response) s += ` res.${name}="${textField(capturedValue(name, r.responseHeaders?.[name], redact))}"`
  }
  return s
}

// eslint-disable-next-line no-control-regex -- what JSON.stringify would escape (RFC 8259 section 7, and lone surrogates)
const JSON_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/
/** A JSON string; most values need no escaping, and a regex test is cheaper than JSON.stringify. */
const str = (s: string | undefined): string => (s === undefined ? 'null' : JSON_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`)

function json(r: AccessRecord, clock: TimeText, redact: ReadonlySet<string>): string {
  const h = r.requestHeaders
  let s = `{"time":"${clock.iso(r.time)}","client":${str(r.client)},"user":${str(r.user)},"method":${str(r.method)},"target":${str(r.target)},"protocol":"${r.protocol}","status":${r.status},"bytes_in":${r.bytesIn},"bytes_out":${r.bytesOut},"duration_ms":${ms(r.durationMs)},"upstream_ms":${r.upstreamMs === undefined ? 'null' : ms(r.upstreamMs)},"route":${str(r.route)},"pool":${str(r.pool)},"member":${str(r.member)},"variant":${str(r.variant)},"cache":${str(r.cache)},"request_id":${str(r.requestId)},"firewall":${str(r.firewall)},"anonymous":${r.anonymous},"upgrade":${str(r.upgrade)},"referer":${str(header(h, 'referer'))},"user_agent":${str(header(h, 'user-agent'))}`
  const c = r.capture
  if (c !== undefined) {
    if (c.request.length > 0) {
      s += ',"request_headers":{'
      let first = true
      for (const name of c.request) {
        const v = capturedValue(name, h?.[name], redact)
        if (v === undefined) continue
        s += `${first ? '' : ','}"${name}":${str(v)}`
        first = false
      }
      s += '}'
    }
    if (c.response.length > 0) {
      s += ',"response_headers":{'
      let first = true
      for (const name of c.response) {
        const v = capturedValue(name, r.responseHeaders?.[name], redact)
        if (v === undefined) continue
        s += `${first ? '' : ','}"${name}":${str(v)}`
        first = false
      }
      s += '}'
    }
  }
  return s + '}\n'
}

/** The time as text, the second's part made once per second (a busy proxy logs thousands of lines in one). */
class TimeText {
  private localSecond = -1
  private localText = ''
  private isoSecond = -1
  private isoPrefix = ''

  /** `$time_local`: 03/Dec/2026:09:30:19 +0000 (the process's time zone). */
  local(ms: number): string {
    const second = Math.floor(ms / 1000)
    if (second !== this.localSecond) {
      const d = new Date(second * 1000)
      const off = -d.getTimezoneOffset()
      const abs = Math.abs(off)
      this.localText = `${pad2(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()}:${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())} ${off < 0 ? '-' : '+'}${pad2(Math.floor(abs / 60))}${pad2(abs % 60)}`
      this.localSecond = second
    }
    return this.localText
  }

  /** ISO 8601 in UTC with milliseconds: 2026-12-03T09:30:19.123Z. */
  iso(ms: number): string {
    const second = Math.floor(ms / 1000)
    if (second !== this.isoSecond) {
      this.isoPrefix = new Date(second * 1000).toISOString().slice(0, 20)
      this.isoSecond = second
    }
    return `${this.isoPrefix}${pad3(ms - second * 1000)}Z`
  }
}
