/**
 * Workers mode: the cluster primary adds its workers' status snapshots into one. Counters,
 * in-flight requests, latency buckets, split assignments, cache lookups and sizes add up (each
 * worker has its own memory store and near cache); a member is healthy when every worker sees
 * it healthy (each runs its own checks), drained when any worker has it drained.
 */
import type { MemberSnapshot, PoolSnapshot, StatusSnapshot } from './status-snapshot.js'

function addInto(into: number[], add: readonly number[]): number[] {
  if (into.length !== add.length) return into.length >= add.length ? into : [...add]
  return into.map((v, i) => v + add[i])
}

function mergeMember(a: MemberSnapshot, b: MemberSnapshot): MemberSnapshot {
  const workers = (a.workers ?? 1) + 1
  const healthyWorkers = (a.healthy_workers ?? (a.healthy ? 1 : 0)) + (b.healthy ? 1 : 0)
  return {
    ...a,
    healthy: a.healthy && b.healthy,
    health_check: a.health_check === 'up' && b.health_check === 'up' ? 'up' : 'down',
    last_check: a.health_check === 'down' ? a.last_check : b.health_check === 'down' ? b.last_check : a.last_check,
    ejected_for_ms: Math.max(a.ejected_for_ms, b.ejected_for_ms),
    ejections: a.ejections + b.ejections,
    drained: a.drained || b.drained,
    available: a.available || b.available,
    in_flight: a.in_flight + b.in_flight,
    requests: a.requests + b.requests,
    failures: a.failures + b.failures,
    latency: addInto(a.latency, b.latency),
    workers,
    healthy_workers: healthyWorkers
  }
}

function mergePool(a: PoolSnapshot, b: PoolSnapshot): PoolSnapshot {
  const members = a.members.map((m) => {
    const other = b.members.find((x) => x.name === m.name)
    return other === undefined ? m : mergeMember(m, other)
  })
  for (const m of b.members) if (!members.some((x) => x.name === m.name)) members.push(m)
  return { ...a, panic: a.panic || b.panic, in_flight: a.in_flight + b.in_flight, queued: a.queued + b.queued, members }
}

function one(s: StatusSnapshot): StatusSnapshot {
  return {
    ...s,
    pools: s.pools.map((p) => ({ ...p, members: p.members.map((m) => ({ ...m, workers: 1, healthy_workers: m.healthy ? 1 : 0 })) }))
  }
}

function addOptional(a: number | null, b: number | null): number | null {
  return a === null ? b : b === null ? a : a + b
}

/** The sum of the workers' snapshots (undefined when none answered). */
export function mergeSnapshots(all: readonly StatusSnapshot[]): StatusSnapshot | undefined {
  if (all.length === 0) return undefined
  let acc = one(all[0])
  for (const s of all.slice(1)) {
    const pools = acc.pools.map((p) => {
      const other = s.pools.find((x) => x.name === p.name)
      return other === undefined ? p : mergePool(p, other)
    })
    for (const p of s.pools) if (!pools.some((x) => x.name === p.name)) pools.push(one({ ...s, pools: [p] }).pools[0])
    const splits = acc.splits.map((sp) => {
      const other = s.splits.find((x) => x.name === sp.name)
      if (other === undefined) return sp
      return { ...sp, variants: sp.variants.map((v) => ({ ...v, assigned: v.assigned + (other.variants.find((x) => x.name === v.name)?.assigned ?? 0) })) }
    })
    const lookups = { ...acc.cache.lookups }
    for (const [k, v] of Object.entries(s.cache.lookups)) lookups[k] = (lookups[k] ?? 0) + v
    acc = {
      ...acc,
      at: Math.max(acc.at, s.at),
      latency_le: acc.latency_le.length >= s.latency_le.length ? acc.latency_le : s.latency_le,
      pools,
      splits,
      cache: {
        ...acc.cache,
        enabled: acc.cache.enabled || s.cache.enabled,
        entries: addOptional(acc.cache.entries, s.cache.entries),
        bytes: addOptional(acc.cache.bytes, s.cache.bytes),
        lookups
      }
    }
  }
  return acc
}
