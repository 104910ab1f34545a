/**
 * One place that turns cache.redis.url into an ioredis client: a standalone server, a Sentinel
 * group or a Redis Cluster, all with the same failure model (see redis-store.ts): bounded
 * commands, no offline queue, no replays, reconnect forever with capped jittered backoff.
 *
 * URL forms:
 *   redis://[user:password@]host:port[/db]        standalone (ioredis's own form)
 *   rediss://...                                   the same over TLS
 *   redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/<db>][?sentinel_password=...]
 *   redis+cluster://[user:password@]host:port[,host:port...]   seed nodes of a Redis Cluster
 *   rediss+cluster://...                           the same over TLS
 */
import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis'

export type RedisClient = Redis | Cluster

/** How the cache's connections behave; the same for every connection we open. */
export interface ConnectionPolicy {
  /** Bound on each command (cache.redis.timeout_ms). */
  timeoutMs: number
  /** Cap of the reconnect backoff. */
  maxReconnectDelayMs: number
  /** CLIENT SETNAME of every connection. */
  connectionName: string
}

const SENTINEL_RE = /^redis\+sentinel:\/\/(?:([^@/]*)@)?([^/?]+)\/([^/?]+)(?:\/(\d+))?\/?(?:\?(.*))?$/
const CLUSTER_RE = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?]+)\/?$/i

function hostList(hosts: string, defaultPort: number): { host: string; port: number }[] {
  return hosts.split(',').map((hp) => {
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(hp)
    if (m === null) throw new Error(`cache.redis.url: bad address ${JSON.stringify(hp)}`)
    return { host: m[1].replace(/^\[|\]$/g, ''), port: m[2] === undefined ? defaultPort : Number(m[2]) }
  })
}

function credentials(auth: string | undefined): Pick<RedisOptions, 'username' | 'password'> {
  if (auth === undefined) return {}
  const colon = auth.indexOf(':')
  if (colon < 0) return { password: decodeURIComponent(auth) }
  const out: Pick<RedisOptions, 'username' | 'password'> = { password: decodeURIComponent(auth.slice(colon + 1)) }
  if (colon > 0) out.username = decodeURIComponent(auth.slice(0, colon))
  return out
}

function redacted(url: string): string {
  return JSON.stringify(url.replace(/\/\/[^@/]*@/, '//***@'))
}

/** Whether the URL names a Redis Cluster. */
export function isClusterUrl(url: string): boolean {
  return CLUSTER_RE.test(url)
}

/**
 * ioredis options for a standalone or Sentinel URL (redis:// and rediss:// are parsed by
 * ioredis itself, so they give {}). Throws, naming the URL without its credentials, for
 * anything else; cluster URLs go through clusterNodesFromUrl.
 */
export function redisOptionsFromUrl(url: string): RedisOptions {
  const sentinel = SENTINEL_RE.exec(url)
  if (sentinel !== null) {
    const [, auth, hosts, name, db, query] = sentinel
    const opts: RedisOptions = { sentinels: hostList(hosts, 26379), name: decodeURIComponent(name), ...credentials(auth) }
    if (db !== undefined) opts.db = Number(db)
    const sentinelPassword = new URLSearchParams(query ?? '').get('sentinel_password')
    if (sentinelPassword !== null) opts.sentinelPassword = sentinelPassword
    return opts
  }
  if (/^rediss?:\/\//i.test(url)) return {}
  throw new Error(`cache.redis.url: unsupported URL scheme in ${redacted(url)} (use redis://, rediss://, redis+sentinel:// or redis+cluster://)`)
}

/** The seed nodes and per-node options of a redis+cluster:// URL. */
export function clusterNodesFromUrl(url: string): { nodes: ClusterNode[]; options: RedisOptions } {
  const m = CLUSTER_RE.exec(url)
  if (m === null) throw new Error(`cache.redis.url: not a cluster URL: ${redacted(url)}`)
  const [, scheme, auth, hosts] = m
  const options: RedisOptions = credentials(auth)
  if (scheme.toLowerCase() === 'rediss') options.tls = {}
  return { nodes: hostList(hosts, 6379), options }
}

/** Capped exponential backoff with jitter, so a fleet of proxies does not reconnect in lockstep. */
export function reconnectDelay(attempt: number, capMs: number): number {
  const base = Math.min(capMs, 50 * 2 ** Math.min(attempt, 16))
  return Math.round(base / 2 + Math.random() * (base / 2))
}

/** The per-connection options of the failure model (see the file comment of redis-store.ts). */
function connectionOptions(policy: ConnectionPolicy): RedisOptions {
  const slow = Math.max(1000, policy.timeoutMs * 10)
  return {
    commandTimeout: policy.timeoutMs,
    connectTimeout: slow,
    socketTimeout: slow,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt) => reconnectDelay(attempt, policy.maxReconnectDelayMs),
    sentinelRetryStrategy: (attempt) => reconnectDelay(attempt, policy.maxReconnectDelayMs),
    sentinelCommandTimeout: slow,
    connectionName: policy.connectionName
  }
}

/**
 * A client for `url`. `extra` adds options to every connection (e.g. enableOfflineQueue for a
 * subscriber). Does not wait for the connection: watch `status` / the 'ready' event.
 */
export function createRedisClient(url: string, policy: ConnectionPolicy, extra: RedisOptions = {}): RedisClient {
  const options = { ...connectionOptions(policy), ...extra }
  if (isClusterUrl(url)) {
    // ioredis gives every node connection retryStrategy null and an offline queue whatever
    // redisOptions say: reconnection is the Cluster's (clusterRetryStrategy), commands are
    // still bounded by commandTimeout, and the Cluster's own offline queue stays off.
    const { nodes, options: nodeOptions } = clusterNodesFromUrl(url)
    return new Cluster(nodes, {
      redisOptions: { ...options, ...nodeOptions },
      enableOfflineQueue: options.enableOfflineQueue,
      maxRedirections: 4,
      retryDelayOnFailover: 50,
      retryDelayOnClusterDown: 50,
      slotsRefreshTimeout: Math.max(1000, policy.timeoutMs * 10),
      clusterRetryStrategy: (attempt) => reconnectDelay(attempt, policy.maxReconnectDelayMs)
    })
  }
  const base = { ...redisOptionsFromUrl(url), ...options }
  return /^rediss?:\/\//i.test(url) ? new Redis(url, base) : new Redis(base)
}

/** The master nodes' clients (one client for a standalone or Sentinel connection). */
export function masters(client: RedisClient): Redis[] {
  return client instanceof Cluster ? client.nodes('master') : [client]
}
