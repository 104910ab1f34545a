/**
 * The upstreams.yaml schema. Types derive from it (DESIGN.md habit 3), so the two cannot drift.
 * Durations (keys ending in _ms) are whole milliseconds or strings such as "2s" (load.ts turns
 * those into milliseconds, so Config holds integers); sizes are integers in bytes; keys are
 * snake_case.
 */
import { Type, type Static } from '@sinclair/typebox'

/** A string enum as plain JSON Schema `enum`, so a wrong value reads "expected one of: ...". */
function StringEnum<T extends string>(values: readonly T[], def?: T) {
  return Type.Unsafe<T>({ type: 'string', enum: [...values], ...(def === undefined ? {} : { default: def }) })
}

const Name = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$', description: 'a name of letters, digits, _ . - (at most 63)' })
/** "500ms", "2s", "1.5s", "1m", "1h": a number and one unit. */
export const DURATION_PATTERN = '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$'
/** Node's timers hold at most 2^31-1 ms (about 24.8 days); a longer delay fires after 1 ms. */
export const MAX_MS = 2147483647
/** What the error for a bad duration says it expected (load.ts also finds duration keys by it). */
export const DURATION_DESCRIPTION = 'milliseconds or a duration such as "10s"'
/**
 * A duration: whole milliseconds, or a string with a unit. Typed as a number because load.ts
 * converts the strings after validation: the rest of the code only ever sees milliseconds.
 */
const Ms = (def?: number, minimum = 0) => Type.Unsafe<number>({
  anyOf: [
    { type: 'integer', minimum, maximum: MAX_MS },
    { type: 'string', pattern: DURATION_PATTERN }
  ],
  description: DURATION_DESCRIPTION,
  ...(def === undefined ? {} : { default: def })
})
const Port = (def: number) => Type.Integer({ minimum: 0, maximum: 65535, default: def })

/** `logging.format`; auto picks pretty on a terminal, JSON otherwise (control/logger.ts). */
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const
export type LogFormat = (typeof LOG_FORMATS)[number]

/**
 * `logging.access_log.format`: nginx/Apache `combined` exactly (for log analysers), `extended`
 * (combined, then key="value" fields as an nginx custom log_format appends them), or `json`
 * (one object a line). See src/access-log/.
 */
export const ACCESS_LOG_FORMATS = ['combined', 'extended', 'json'] as const
export type AccessLogFormat = (typeof ACCESS_LOG_FORMATS)[number]
/** Header values never written to the access log (replaced with "[redacted]"); `redact` adds to them. */
export const DEFAULT_REDACT = ['authorization', 'proxy-authorization', 'cookie', 'set-cookie'] as const

const HeaderName = Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$', description: 'a header field name' })
/** Header fields copied into the access log, by name (case-insensitive). */
const AccessLogHeaders = Type.Object({
  request: Type.Array(HeaderName, { default: [] }),
  response: Type.Array(HeaderName, { default: [] })
}, { additionalProperties: false, default: {} })

/** `logging.access_log` (`access_log: true` is read as `{enabled: true}`). */
const AccessLog = Type.Object({
  enabled: Type.Boolean({ default: false }),
  format: StringEnum(ACCESS_LOG_FORMATS, 'json'),
  /** A file (appended to, reopened on SIGUSR1 for logrotate); null or absent: stdout. */
  path: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Null()])),
  /** Captured on every route (a route's own list adds to these). */
  headers: AccessLogHeaders,
  /** Captured headers whose values are written as "[redacted]", besides DEFAULT_REDACT (always). */
  redact: Type.Array(HeaderName, { default: [...DEFAULT_REDACT] })
}, { additionalProperties: false, default: {} })

/** A route's access log: off for this route, or more headers captured. */
const RouteAccessLog = Type.Object({
  enabled: Type.Boolean({ default: true }),
  headers: AccessLogHeaders
}, { additionalProperties: false })

/** least_connections is least_request by another name (an L4 member's in-flight count is its open connections or sessions). */
export const BALANCERS = ['round_robin', 'weighted', 'least_request', 'least_connections', 'random', 'hash'] as const
export const LISTENER_PROTOCOLS = ['http', 'tcp', 'udp'] as const
export const LISTENER_MODES = ['reverse', 'forward'] as const

const ServerName = Type.String({ pattern: '^(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$', description: 'a server name (example.com) or a wildcard (*.example.com)' })

const TlsCertificate = Type.Object({
  /** PEM file: the certificate, then its intermediates. */
  cert: Type.String({ minLength: 1 }),
  /** PEM file: the private key. */
  key: Type.String({ minLength: 1 }),
  /** SNI names this certificate answers (exact, or *.domain); default: the names in the certificate. */
  names: Type.Optional(Type.Array(ServerName, { minItems: 1 }))
}, { additionalProperties: false })

const Hsts = Type.Object({
  max_age_s: Type.Integer({ minimum: 0, default: 31536000 }),
  include_subdomains: Type.Boolean({ default: false }),
  preload: Type.Boolean({ default: false })
}, { additionalProperties: false })

const ListenerTls = Type.Object({
  /** Picked by SNI (exact names first, then *. names); the first one answers any other name. */
  certificates: Type.Array(TlsCertificate, { default: [] }),
  /** Generate a certificate for localhost at start (demos, tests); used when no file matches. */
  self_signed: Type.Boolean({ default: false }),
  min_version: StringEnum(['TLSv1.2', 'TLSv1.3'] as const, 'TLSv1.2'),
  /** Protocols offered by ALPN, in order of preference. */
  alpn: Type.Array(StringEnum(['h2', 'http/1.1'] as const), { minItems: 1, default: ['h2', 'http/1.1'] }),
  /** Re-read the certificate files when they change, checked this often (0 = only on reload). */
  watch_interval_ms: Ms(2000),
  /** Strict-Transport-Security on every answer of this listener (RFC 6797). */
  hsts: Type.Optional(Hsts)
}, { additionalProperties: false })

/** A `protocol: tcp` listener's settings (load.ts gives a tcp listener `tcp: {}` so these defaults apply). */
const ListenerTcp = Type.Object({
  /** Time for a member to accept the connection; then the next member is tried. */
  connect_timeout_ms: Ms(2000, 1),
  /** A connection with no bytes either way for this long is closed (0 = never). */
  idle_timeout_ms: Ms(600000),
  /** Client connections open at once on this listener (0 = no cap); beyond it they are closed at once. */
  max_connections: Type.Integer({ minimum: 0, default: 10000 }),
  /** Members tried for one client connection when a connect fails (the first try included). */
  connect_attempts: Type.Integer({ minimum: 1, maximum: 10, default: 3 }),
  /** Send the client's address to the member first, in HAProxy's PROXY protocol (v1 text, v2 binary). */
  proxy_protocol: StringEnum(['off', 'v1', 'v2'] as const, 'off')
}, { additionalProperties: false })

/** A `protocol: udp` listener's settings (load.ts gives a udp listener `udp: {}` so these defaults apply). */
const ListenerUdp = Type.Object({
  /** A client address with no datagram either way for this long loses its session (and upstream socket). */
  session_idle_ms: Ms(60000, 1),
  /** Sessions (client addresses) at once; a datagram from a new address beyond it is dropped. */
  max_sessions: Type.Integer({ minimum: 1, default: 10000 }),
  /**
   * A client is never sent more than this many times the bytes its datagrams carried: replies
   * beyond it are dropped, so the proxy cannot amplify a flood towards a spoofed source address.
   */
  max_reply_factor: Type.Number({ minimum: 1, maximum: 100, default: 2 })
}, { additionalProperties: false })

export const Listener = Type.Object({
  /** The label of this listener's metrics and logs (default: its host:port). */
  name: Type.Optional(Name),
  host: Type.String({ default: '0.0.0.0' }),
  port: Port(8080),
  /** http: the HTTP pipeline (routes); tcp or udp: every connection or datagram goes to `pool`. */
  protocol: StringEnum(LISTENER_PROTOCOLS, 'http'),
  /** tcp and udp listeners: the pool (of tcp:// or udp:// members) they balance over. */
  pool: Type.Optional(Type.String({ minLength: 1 })),
  tcp: Type.Optional(ListenerTcp),
  udp: Type.Optional(ListenerUdp),
  tls: Type.Optional(ListenerTls),
  /**
   * http listeners: reverse (the routes) or forward (an open proxy for clients configured with
   * it: absolute-form requests and CONNECT tunnels, ruled by the `forward` section).
   */
  mode: StringEnum(LISTENER_MODES, 'reverse'),
  /** Plain listeners: also accept HTTP/2 with prior knowledge (h2c), beside HTTP/1.1. */
  h2c: Type.Boolean({ default: false }),
  /** Plain listeners: answer every request with a redirect to https:// on this port. */
  redirect_https: Type.Optional(Type.Object({
    port: Port(443),
    status: Type.Unsafe<301 | 302 | 307 | 308>({ type: 'integer', enum: [301, 302, 307, 308], default: 308 })
  }, { additionalProperties: false }))
}, { additionalProperties: false })

/** `listen: {host, port}` (one listener) is accepted and read as a list of one (load.ts). */
const Listen = Type.Array(Listener, { minItems: 1, default: [{}], description: 'one listener (a mapping) or a list of them; default: one plain listener on 0.0.0.0:8080' })

const Http2Limits = Type.Object({
  /** Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
  max_concurrent_streams: Type.Integer({ minimum: 1, maximum: 10000, default: 128 }),
  /**
   * Streams a client may reset in a window before its connection is closed with
   * ENHANCE_YOUR_CALM: the rapid-reset attack (CVE-2023-44487) opens and cancels in a loop.
   */
  max_resets: Type.Integer({ minimum: 1, default: 200 }),
  reset_window_ms: Ms(10000, 100)
}, { additionalProperties: false, default: {} })

const Admin = Type.Object({
  host: Type.String({ default: '127.0.0.1' }),
  port: Port(9901),
  /** Required for mutating admin calls when the admin listener is not on loopback. */
  token: Type.Optional(Type.String())
}, { additionalProperties: false, default: {} })

const Limits = Type.Object({
  max_header_bytes: Type.Integer({ minimum: 1024, maximum: 1048576, default: 16384 }),
  headers_timeout_ms: Ms(10000),
  /** The whole request, head and body, must arrive within this (Node's requestTimeout; 408 after). */
  request_timeout_ms: Ms(30000),
  /** Longest pause between two reads of a request body (nginx's client_body_timeout; 0 = none); 408 after. */
  client_body_timeout_ms: Ms(10000),
  /** Forward header fields whose names contain '_' (nginx's underscores_in_headers); dropped by default. */
  underscores_in_headers: Type.Boolean({ default: false }),
  keep_alive_timeout_ms: Ms(5000),
  max_body_bytes: Type.Integer({ minimum: 0, default: 10 * 1024 * 1024 }),
  shutdown_timeout_ms: Ms(10000),
  /** Client connections the proxy listener accepts at once (0 = no cap); beyond it they are refused. */
  max_connections: Type.Integer({ minimum: 0, default: 0 }),
  /** Answer 503 (Retry-After) while the event loop lags more than this (0 = off); admin keeps answering. */
  max_event_loop_delay_ms: Ms(1000),
  http2: Http2Limits
}, { additionalProperties: false, default: {} })

const Member = Type.Object({
  /** http://host:port or https://host:port; tcp://host:port or udp://host:port in an L4 pool. */
  url: Type.String({ minLength: 1 }),
  weight: Type.Integer({ minimum: 1, maximum: 10000, default: 1 }),
  name: Type.Optional(Name)
}, { additionalProperties: false })

const HashOn = Type.Object({
  header: Type.Optional(Type.String({ minLength: 1 })),
  cookie: Type.Optional(Type.String({ minLength: 1 })),
  source_ip: Type.Optional(Type.Boolean())
}, { additionalProperties: false })

const HealthCheck = Type.Object({
  /**
   * http: GET `path` and expect a status in the range; tcp: a connect is enough; udp: send
   * `payload` and expect any reply. Default: the pool's protocol (http for http(s):// members).
   */
  type: StringEnum(['http', 'tcp', 'udp'] as const, 'http'),
  /** udp checks: the datagram sent (any reply passes). */
  payload: Type.String({ minLength: 1, default: 'ping' }),
  path: Type.String({ pattern: '^/', default: '/health' }),
  expected_status: Type.Object({
    min: Type.Integer({ minimum: 100, maximum: 599, default: 200 }),
    max: Type.Integer({ minimum: 100, maximum: 599, default: 399 })
  }, { additionalProperties: false, default: {} }),
  interval_ms: Ms(2000, 50),
  timeout_ms: Ms(1000, 10),
  /** Consecutive passes that bring a down member back, and failures that take it down. */
  rise: Type.Integer({ minimum: 1, default: 2 }),
  fall: Type.Integer({ minimum: 1, default: 3 })
}, { additionalProperties: false })

const Outlier = Type.Object({
  /** Consecutive 5xx answers or connect failures that eject a member (0 turns ejection off). */
  consecutive_failures: Type.Integer({ minimum: 0, default: 5 }),
  /** First ejection lasts this long; each further ejection of the same member lasts longer. */
  base_ejection_ms: Ms(10000, 1),
  max_ejection_ms: Ms(300000, 1),
  max_ejected_percent: Type.Integer({ minimum: 0, maximum: 100, default: 50 })
}, { additionalProperties: false, default: {} })

const Pool = Type.Object({
  members: Type.Array(Member, { minItems: 1 }),
  health_check: Type.Optional(HealthCheck),
  outlier: Outlier,
  /** When fewer than this share of members is healthy, balance over all of them (Envoy's panic mode). */
  panic_threshold_percent: Type.Integer({ minimum: 0, maximum: 100, default: 50 }),
  retry_budget: Type.Object({
    /** Retries may add at most this share of the pool's requests over the window... */
    percent: Type.Integer({ minimum: 0, maximum: 100, default: 20 }),
    /** ...but this many retries per second are always allowed, so a quiet pool can retry. */
    min_per_second: Type.Integer({ minimum: 0, default: 3 }),
    window_ms: Ms(10000, 1000)
  }, { additionalProperties: false, default: {} }),
  balancer: StringEnum(BALANCERS, 'round_robin'),
  hash_on: Type.Optional(HashOn),
  /** preserve: send the client's Host; upstream: send the member's host:port. */
  host_header: StringEnum(['preserve', 'upstream'] as const, 'preserve'),
  timeouts: Type.Object({
    connect_ms: Ms(2000),
    request_ms: Ms(30000)
  }, { additionalProperties: false, default: {} }),
  max_connections: Type.Integer({ minimum: 1, maximum: 100000, default: 128 }),
  /** Requests the pool may have outstanding at once (0 = no cap); beyond it they queue... */
  max_requests: Type.Integer({ minimum: 0, default: 0 }),
  /** ...in a short queue; when it is full, or a request waited timeout_ms, the answer is 503 with Retry-After. */
  queue: Type.Object({
    size: Type.Integer({ minimum: 0, default: 100 }),
    timeout_ms: Ms(1000, 1)
  }, { additionalProperties: false, default: {} }),
  tls: Type.Object({
    verify: Type.Boolean({ default: true })
  }, { additionalProperties: false, default: {} }),
  /** Offer HTTP/2 to https:// members (ALPN); they may still answer in HTTP/1.1. */
  http2: Type.Boolean({ default: false })
}, { additionalProperties: false })

const Match = Type.Object({
  host: Type.Optional(Type.String({ minLength: 1 })),
  path_prefix: Type.String({ pattern: '^/', default: '/' }),
  methods: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Z]+$' }), { minItems: 1 })),
  headers: Type.Optional(Type.Record(Type.String(), Type.String()))
}, { additionalProperties: false, default: {} })

const Variant = Type.Object({
  name: Name,
  pool: Type.String({ minLength: 1 }),
  weight: Type.Number({ minimum: 0 })
}, { additionalProperties: false })

const Split = Type.Object({
  name: Name,
  variants: Type.Array(Variant, { minItems: 1 }),
  sticky: Type.Object({
    cookie: Type.Optional(Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' })),
    header: Type.Optional(Type.String({ minLength: 1 })),
    cookie_max_age_s: Type.Integer({ minimum: 0, default: 2592000 })
  }, { additionalProperties: false, default: {} }),
  override_header: Type.String({ minLength: 1, default: 'x-switchyard-variant' }),
  /** Seed of the assignment hash (default: the split's name); a new salt reshuffles every client. */
  salt: Type.Optional(Type.String({ minLength: 1 })),
  /** The variant the others are compared with (guardrail) and holdout clients get (default: the first). */
  control: Type.Optional(Name),
  /** Percent of clients held out of the experiment: they get the control and count as variant "holdout". */
  holdout: Type.Number({ minimum: 0, maximum: 100, default: 0 }),
  /** Weights that change at set times: `at` is an ISO time or a duration after the split started ("10m"). */
  ramp: Type.Array(Type.Object({
    at: Type.String({ minLength: 1, description: 'an ISO time such as "2026-05-01T09:00:00Z" or a duration after start such as "30m"' }),
    weights: Type.Record(Type.String(), Type.Number({ minimum: 0 }))
  }, { additionalProperties: false }), { default: [] }),
  /** Rolls a variant back (weight 0) when it does worse than the control over a sliding window. */
  guardrail: Type.Optional(Type.Object({
    enabled: Type.Boolean({ default: true }),
    window_s: Type.Integer({ minimum: 1, maximum: 3600, default: 60 }),
    /** Requests both the variant and the control need in the window before they are compared. */
    min_requests: Type.Integer({ minimum: 1, default: 100 }),
    /** Roll back when the variant's 5xx ratio exceeds the control's by more than this (0.05 = 5 points). */
    max_5xx_ratio_delta: Type.Number({ minimum: 0, maximum: 1, default: 0.05 }),
    /** Roll back when the variant's p99 exceeds the control's times this (0 = no latency check) ... */
    max_p99_ratio: Type.Number({ minimum: 0, default: 1.5 }),
    /** ... and by more than this many milliseconds (so 2 ms against 1 ms is no regression). */
    min_p99_delta_ms: Ms(50)
  }, { additionalProperties: false }))
}, { additionalProperties: false })

export const RouteCache = Type.Object({
  enabled: Type.Boolean({ default: true }),
  /** TTL applied when the origin gives no freshness information (0 = do not cache then). */
  default_ttl_s: Type.Integer({ minimum: 0, default: 0 }),
  /**
   * When the origin fails (connection error, timeout, 500/502/503/504), serve the stale entry for
   * up to this many seconds past its freshness, as if it said stale-if-error (RFC 5861); never
   * for must-revalidate, proxy-revalidate, s-maxage or no-cache. 0 = only where the origin says so.
   */
  stale_if_error_s: Type.Integer({ minimum: 0, default: 60 }),
  max_entry_bytes: Type.Integer({ minimum: 0, default: 1048576 }),
  /** all: key on the whole query; none: ignore it; or a list of parameter names to keep. */
  query: Type.Union([StringEnum(['all', 'none'] as const), Type.Array(Type.String())], { default: 'all', description: "'all', 'none' or a list of query parameter names" }),
  /**
   * bypass: a request carrying cookies (other than the proxy's own split cookie) is neither
   * served from nor stored in the cache, as Varnish does by default; ignore: cookies do not
   * matter (the origin must mark personal answers private or Vary: Cookie).
   */
  cookies: StringEnum(['bypass', 'ignore'] as const, 'bypass'),
  /** Share responses that carry Set-Cookie with other clients (off by default, RFC 9111 section 7.3). */
  share_set_cookie: Type.Boolean({ default: false }),
  /**
   * Targeted cache-control fields (RFC 9213), in priority order: the first one present with a
   * valid value decides this cache's storage and freshness instead of Cache-Control and Expires.
   */
  targeted_fields: Type.Array(Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }), { default: ['Switchyard-Cache-Control', 'CDN-Cache-Control'] }),
  /** Remove the targeted fields from answers to clients (keep them when another CDN sits in front). */
  strip_targeted_fields: Type.Boolean({ default: false }),
  /**
   * Response fields whose values tag a stored response for purge by tag (Surrogate-Key is
   * space-separated as Fastly and Varnish xkey read it; Cache-Tag is comma-separated as
   * Cloudflare reads it; any other field is read as a comma- or space-separated list).
   */
  tag_headers: Type.Array(Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }), { default: ['Surrogate-Key', 'Cache-Tag'] }),
  /** Remove the tag fields from answers to clients (they are for this cache). */
  strip_tag_headers: Type.Boolean({ default: true })
}, { additionalProperties: false })

/** Response compression (`compress: true` is read as `{}`). */
export const RouteCompress = Type.Object({
  enabled: Type.Boolean({ default: true }),
  /** Codings offered, in the proxy's order of preference when the client's q-values tie. */
  encodings: Type.Array(StringEnum(['br', 'zstd', 'gzip'] as const), { minItems: 1, default: ['br', 'zstd', 'gzip'] }),
  /** Media types compressed (type/subtype, or type/* ); parameters are ignored. */
  types: Type.Array(Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+/[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }), {
    default: ['text/*', 'application/json', 'application/javascript', 'application/xml', 'application/xhtml+xml', 'application/rss+xml', 'application/atom+xml', 'application/ld+json', 'application/manifest+json', 'application/x-javascript', 'application/wasm', 'image/svg+xml', 'image/x-icon', 'font/ttf', 'font/otf']
  }),
  /** Bodies smaller than this (by Content-Length) are sent as they are. */
  min_bytes: Type.Integer({ minimum: 0, default: 1024 }),
  /** Compression levels: brotli 0-11, gzip 1-9, zstd 1-22. */
  brotli_quality: Type.Integer({ minimum: 0, maximum: 11, default: 4 }),
  gzip_level: Type.Integer({ minimum: 1, maximum: 9, default: 6 }),
  zstd_level: Type.Integer({ minimum: 1, maximum: 22, default: 3 })
}, { additionalProperties: false })

/** WebSocket (and other Upgrade) tunnels (`websocket: false` is read as `{enabled: false}`). */
export const RouteWebSocket = Type.Object({
  enabled: Type.Boolean({ default: true }),
  /** A tunnel with no bytes either way for this long is closed (0 = never). */
  idle_timeout_ms: Ms(300000),
  /** Tunnels open at once on this route (0 = no cap); beyond it the upgrade gets 503. */
  max_tunnels: Type.Integer({ minimum: 0, default: 10000 })
}, { additionalProperties: false, default: {} })

const Retries = Type.Object({
  /** Further tries after the first, each on a different member when the pool has one. */
  attempts: Type.Integer({ minimum: 0, maximum: 10, default: 2 }),
  /** Upstream statuses that are retried like a failed connection. */
  on_status: Type.Array(Type.Integer({ minimum: 500, maximum: 599 }), { default: [502, 503, 504] }),
  /** POST and PATCH are never retried unless listed here explicitly. */
  methods: Type.Array(Type.String({ pattern: '^[A-Z]+$' }), { default: ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'] }),
  per_try_timeout_ms: Type.Optional(Ms(undefined, 1)),
  /** A request body up to this size is held so it can be replayed; larger bodies are never retried. */
  buffer_body_bytes: Type.Integer({ minimum: 0, default: 65536 })
}, { additionalProperties: false, default: {} })

/** A header field name (RFC 9110 section 5.1 token). */
const FieldName = Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$', description: 'a header field name' })

/** One header condition of an access rule: exactly one of present, equals, matches (load.ts checks). */
const HeaderCondition = Type.Object({
  present: Type.Optional(Type.Boolean()),
  equals: Type.Optional(Type.String()),
  /** A JavaScript regular expression, tested against the field value (several lines joined with ", "). */
  matches: Type.Optional(Type.String({ minLength: 1 }))
}, { additionalProperties: false })

/** What an access rule looks at; every condition given must hold (none given: every request). */
export const AccessConditions = Type.Object({
  /** Client addresses or CIDRs, checked on the client address after trusted_proxies. */
  cidrs: Type.Optional(Type.Array(Type.String(), { minItems: 1 })),
  methods: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Z]+$' }), { minItems: 1 })),
  /** Normalised request paths (no query): a prefix ("/admin/"), or a regular expression after "~" ("~^/api/v[0-9]+/"). */
  paths: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
  headers: Type.Optional(Type.Record(FieldName, HeaderCondition)),
  /** The user an earlier basic or jwt rule authenticated (Basic user name, JWT sub) is one of these. */
  users: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }))
}, { additionalProperties: false })

/** `scrypt$N$r$p$<salt base64>$<hash base64>` (security/password-hash.ts). */
export const SCRYPT_HASH_PATTERN = '^scrypt\\$[0-9]+\\$[0-9]+\\$[0-9]+\\$[A-Za-z0-9+/]+={0,2}\\$[A-Za-z0-9+/]+={0,2}$'

const BasicAuth = Type.Object({
  /** RFC 7617 section 2: the protection space named in WWW-Authenticate. */
  realm: Type.String({ default: 'switchyard', pattern: '^[^"\\\\]*$' }),
  /** User name -> scrypt hash (`switchyard hash-password`-style `scrypt$N$r$p$salt$hash`). */
  users: Type.Record(Type.String({ pattern: '^[^:]+$' }), Type.String({ pattern: SCRYPT_HASH_PATTERN, description: 'an scrypt hash: scrypt$N$r$p$<salt base64>$<hash base64>' }))
}, { additionalProperties: false })

export const JWT_ALGORITHMS = ['HS256', 'RS256', 'ES256'] as const

const Jwt = Type.Object({
  realm: Type.String({ default: 'switchyard', pattern: '^[^"\\\\]*$' }),
  /** HS256 shared secret (use ${ENV} interpolation); RFC 7518 section 3.2: at least 256 bits. */
  secret: Type.Optional(Type.String({ minLength: 32 })),
  /** RS256/ES256 public keys: a JWKS file (RFC 7517 section 5), relative to the config file, read again on reload. */
  jwks_file: Type.Optional(Type.String({ minLength: 1 })),
  /** Algorithms accepted (default: HS256 with secret, RS256 and ES256 with jwks_file). */
  algorithms: Type.Optional(Type.Array(StringEnum(JWT_ALGORITHMS), { minItems: 1 })),
  issuer: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 })])),
  audience: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 })])),
  /** Claims that must be present (any value). */
  required_claims: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
  /**
   * Claims that must have a value: equal to the string, or one of the list; an array claim or a
   * space-separated string claim (OAuth `scope`, RFC 8693 section 4.2) must contain it.
   * A valid token without them gets 403 (RFC 6750 section 3.1 insufficient_scope).
   */
  claims: Type.Optional(Type.Record(Type.String({ minLength: 1 }), Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 })]))),
  /** Leeway for exp, nbf and iat. */
  clock_tolerance_s: Type.Integer({ minimum: 0, maximum: 3600, default: 30 })
}, { additionalProperties: false })

export const RATE_LIMIT_PERIODS = ['second', 'minute', 'hour'] as const

const RateLimit = Type.Object({
  /** Requests admitted per period. */
  requests: Type.Integer({ minimum: 1 }),
  per: StringEnum(RATE_LIMIT_PERIODS, 'second'),
  /** Extra requests a key may spend at once beyond the rate; they come back over burst/requests periods. */
  burst: Type.Integer({ minimum: 0, default: 0 }),
  /** Count per value of this header (an API key); without it, or when a request lacks it, per client address. */
  key_header: Type.Optional(FieldName),
  /** local: this process; redis: shared by every instance on the same Redis (firewall.redis). */
  store: StringEnum(['local', 'redis'] as const, 'local')
}, { additionalProperties: false })

/**
 * One access rule. Applies when `when` holds (default: always) and `unless` does not (default:
 * never); does exactly one of: `action` allow (admit now, skip later rules) or deny (403),
 * `basic` or `jwt` (require credentials: 401 without), `rate_limit` (429 beyond it).
 */
export const AccessRule = Type.Object({
  name: Type.Optional(Name),
  when: Type.Optional(AccessConditions),
  unless: Type.Optional(AccessConditions),
  action: Type.Optional(StringEnum(['allow', 'deny'] as const)),
  basic: Type.Optional(BasicAuth),
  jwt: Type.Optional(Jwt),
  rate_limit: Type.Optional(RateLimit)
}, { additionalProperties: false })

/** Shared settings of the application firewall (access rules live on routes and at the top level). */
const Firewall = Type.Object({
  /** Redis for `store: redis` rate limits; default: cache.redis.url, then REDIS_URL. */
  redis: Type.Object({
    url: Type.Optional(Type.String()),
    timeout_ms: Ms(100)
  }, { additionalProperties: false, default: {} }),
  /** Namespace of the rate-limit keys in Redis; no braces (a Redis Cluster hash tag). */
  key_prefix: Type.String({ default: 'switchyard:ratelimit:', pattern: '^[^{}]*$' }),
  /** Redis errors of rate limits are logged at most once per this interval (all are counted). */
  error_log_interval_ms: Ms(60000, 1000)
}, { additionalProperties: false, default: {} })

const Route = Type.Object({
  name: Name,
  match: Match,
  pool: Type.Optional(Type.String({ minLength: 1 })),
  split: Type.Optional(Split),
  max_body_bytes: Type.Optional(Type.Integer({ minimum: 0 })),
  retries: Retries,
  /** Overall deadline for the request across all tries (0 = only the per-try timeouts). */
  timeout_ms: Ms(0),
  cache: Type.Optional(RouteCache),
  compress: Type.Optional(RouteCompress),
  websocket: RouteWebSocket,
  /** Access rules (security/firewall.ts), checked after the top-level `access` rules. */
  access: Type.Array(AccessRule, { default: [] }),
  access_log: Type.Optional(RouteAccessLog)
}, { additionalProperties: false })

const Cache = Type.Object({
  store: StringEnum(['auto', 'memory', 'redis'] as const, 'auto'),
  max_bytes: Type.Integer({ minimum: 0, default: 64 * 1024 * 1024 }),
  /** Namespace of every Redis key; no braces (they would become a Redis Cluster hash tag). */
  key_prefix: Type.String({ default: 'switchyard:', pattern: '^[^{}]*$' }),
  redis: Type.Object({
    url: Type.Optional(Type.String()),
    timeout_ms: Ms(100)
  }, { additionalProperties: false, default: {} }),
  /**
   * With the Redis store: an in-process copy of recent hits, kept coherent with Redis by
   * server-assisted invalidation (CLIENT TRACKING), so a hit costs no round trip.
   */
  near_cache: Type.Object({
    enabled: Type.Boolean({ default: true }),
    max_bytes: Type.Integer({ minimum: 0, default: 32 * 1024 * 1024 })
  }, { additionalProperties: false, default: {} }),
  /**
   * With the Redis store: concurrent misses for one key on every instance make one origin
   * request. The first instance takes a lock (held at most lock_ttl_ms); the others wait up to
   * max_wait_ms for its answer to be stored, then fetch themselves.
   */
  coalesce: Type.Object({
    enabled: Type.Boolean({ default: true }),
    lock_ttl_ms: Ms(10000, 100),
    max_wait_ms: Ms(5000)
  }, { additionalProperties: false, default: {} })
}, { additionalProperties: false, default: {} })

/**
 * A destination rule of the forward proxy: every part given must match. `host` is an exact name
 * or address, `*.example.com` (the domain and its subdomains) or `*` (any name); `cidr` an
 * address or range, matched on an address target and on the address a name resolves to when
 * connecting; `ports` the ports it covers (default: any).
 */
const ForwardRule = Type.Object({
  host: Type.Optional(Type.String({ pattern: '^(\\*|(\\*\\.)?[A-Za-z0-9_.:-]+)$', description: 'a host name or address, *.domain, or *' })),
  cidr: Type.Optional(Type.String({ minLength: 1 })),
  ports: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { minItems: 1 }))
}, { additionalProperties: false })

/** A forward proxy user (Proxy-Authorization: Basic), with an scrypt hash from `switchyard hash-password`. */
const ForwardUser = Type.Object({
  name: Type.String({ pattern: '^[^:\\s]{1,64}$', description: 'a user name without ":" or spaces' }),
  password_hash: Type.String({ pattern: '^scrypt\\$', description: 'an scrypt$N$r$p$salt$hash string from `switchyard hash-password`' }),
  /** Destinations this user may reach; replaces forward.allow for the user when given. */
  allow: Type.Optional(Type.Array(ForwardRule)),
  /** Destinations refused to this user, on top of forward.deny. */
  deny: Type.Optional(Type.Array(ForwardRule))
}, { additionalProperties: false })

const MediaRange = Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+/([!#$%&\'*+.^_`|~0-9A-Za-z-]+|\\*)$' })

/** The forward proxy (`mode: forward` listeners): who may use it, where to, what is filtered. */
const Forward = Type.Object({
  /** Client addresses (CIDRs) admitted without credentials. */
  clients: Type.Array(Type.String(), { default: [] }),
  /** Users admitted by Proxy-Authorization: Basic (any client address). */
  users: Type.Array(ForwardUser, { default: [] }),
  /** The realm of the 407's Proxy-Authenticate. */
  realm: Type.String({ pattern: '^[^"\\\\]*$', default: 'switchyard' }),
  /** Destinations allowed (deny by default: a destination no rule allows is refused). */
  allow: Type.Array(ForwardRule, { default: [] }),
  /** Destinations refused even when allowed (checked first). */
  deny: Type.Array(ForwardRule, { default: [] }),
  /** Ports CONNECT may open tunnels to (RFC 9110 section 9.3.6 warns of tunnels to arbitrary ports). */
  connect_ports: Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { default: [443] }),
  filters: Type.Object({
    /** Files of blocked domains, one a line (# comments); a domain blocks its subdomains too. Re-read on reload. */
    blocklists: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
    /** Regular expressions (JavaScript syntax) tested against the path and query of plain requests. */
    paths: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
    /** Response media types refused (type/subtype or type/*); the client gets 403 instead of the body. */
    content_types: Type.Array(MediaRange, { default: [] })
  }, { additionalProperties: false, default: {} }),
  /** No Via, X-Forwarded-For or Forwarded towards origins, and strip_headers removed. */
  anonymous: Type.Boolean({ default: false }),
  /** Request fields removed in anonymous mode (case-insensitive). */
  strip_headers: Type.Array(Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }), {
    default: ['From', 'Referer', 'User-Agent', 'Client-IP', 'True-Client-IP', 'X-Client-IP', 'X-Cluster-Client-IP', 'CF-Connecting-IP']
  }),
  /** The shared HTTP cache for plain http:// GETs (same store and RFC 9111 rules as routes). */
  cache: Type.Optional(RouteCache),
  timeouts: Type.Object({
    connect_ms: Ms(2000),
    /** Per exchange with an origin (0 = none); also the stall limit of a client that stops reading. */
    request_ms: Ms(30000)
  }, { additionalProperties: false, default: {} }),
  /** Keep-alive connections per origin. */
  max_connections_per_origin: Type.Integer({ minimum: 1, maximum: 10000, default: 16 }),
  /** Origins with a connection pool at once; the least recently used one beyond it is closed. */
  max_origins: Type.Integer({ minimum: 1, maximum: 100000, default: 256 }),
  /** An origin unused for this long has its connections closed. */
  origin_idle_ms: Ms(60000, 1000),
  /** A CONNECT tunnel with no bytes either way for this long is closed (0 = never). */
  tunnel_idle_timeout_ms: Ms(300000),
  /** CONNECT tunnels open at once (0 = no cap); beyond it CONNECT gets 503. */
  max_tunnels: Type.Integer({ minimum: 0, default: 10000 })
}, { additionalProperties: false, default: {} })

const Sidecar = Type.Object({
  name: Name,
  /** `switchyard` runs this program's own CLI; anything else is an executable on PATH or a path. */
  command: Type.String({ minLength: 1 }),
  args: Type.Array(Type.String(), { default: [] }),
  env: Type.Record(Type.String(), Type.String(), { default: {} }),
  enabled: Type.Boolean({ default: true }),
  restart: Type.Object({
    initial_delay_ms: Ms(250),
    max_delay_ms: Ms(30000)
  }, { additionalProperties: false, default: {} }),
  stop_timeout_ms: Ms(5000)
}, { additionalProperties: false })

export const ConfigSchema = Type.Object({
  /** Proxy processes sharing the listener (node:cluster); 0 = one per CPU core, 1 = no cluster. */
  workers: Type.Integer({ minimum: 0, maximum: 64, default: 0 }),
  listen: Listen,
  admin: Admin,
  limits: Limits,
  trusted_proxies: Type.Array(Type.String(), { default: [] }),
  /** Access rules checked on every route, before the route's own. */
  access: Type.Array(AccessRule, { default: [] }),
  firewall: Firewall,
  logging: Type.Object({
    level: StringEnum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
    /**
     * How log lines are written on stdout: `json` (one JSON object a line), `pretty` (readable
     * lines, pino-pretty), or `auto`: pretty when stdout is a terminal, else JSON. The
     * SWITCHYARD_LOG_FORMAT environment variable, when set, wins over this.
     */
    format: Type.Unsafe<LogFormat>({ type: 'string', enum: [...LOG_FORMATS], default: 'auto', description: 'auto: readable lines when stdout is a terminal, else JSON; json; pretty (SWITCHYARD_LOG_FORMAT wins)' }),
    access_log: AccessLog
  }, { additionalProperties: false, default: {} }),
  // additionalProperties: without it a pool whose name misses the pattern would not be validated at all.
  pools: Type.Record(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' }), Pool, { additionalProperties: false }),
  routes: Type.Array(Route),
  cache: Cache,
  forward: Forward,
  sidecars: Type.Array(Sidecar, { default: [] })
}, { additionalProperties: false })

export type Config = Static<typeof ConfigSchema>
export type PoolConfig = Static<typeof Pool>
export type MemberConfig = Static<typeof Member>
export type RouteConfig = Static<typeof Route>
export type SplitConfig = Static<typeof Split>
export type SplitGuardrailConfig = NonNullable<SplitConfig['guardrail']>
export type RouteCacheConfig = Static<typeof RouteCache>
export type RouteCompressConfig = Static<typeof RouteCompress>
export type AccessLogConfig = Static<typeof AccessLog>
export type RouteAccessLogConfig = Static<typeof RouteAccessLog>
export type RouteWebSocketConfig = Static<typeof RouteWebSocket>
export type AccessRuleConfig = Static<typeof AccessRule>
export type AccessConditionsConfig = Static<typeof AccessConditions>
export type FirewallConfig = Static<typeof Firewall>
export type ListenerConfig = Static<typeof Listener>
export type ListenerTcpConfig = Static<typeof ListenerTcp>
export type ListenerUdpConfig = Static<typeof ListenerUdp>
export type ListenerTlsConfig = Static<typeof ListenerTls>
export type TlsCertificateConfig = Static<typeof TlsCertificate>
export type CacheConfig = Static<typeof Cache>
export type ForwardConfig = Static<typeof Forward>
export type ForwardRuleConfig = Static<typeof ForwardRule>
export type ForwardUserConfig = Static<typeof ForwardUser>
export type SidecarConfig = Static<typeof Sidecar>
export type HealthCheckConfig = Static<typeof HealthCheck>
export type RetriesConfig = Static<typeof Retries>
export type BalancerName = (typeof BALANCERS)[number]
