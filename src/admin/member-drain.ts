import type { Runtime } from '../routing/runtime.js'

/** An admin call's answer: its status and JSON body (the admin plugin sends it as is). */
export interface AdminAnswer {
  status: number
  body: Record<string, unknown>
}

/**
 * Drains a pool member by hand, or puts it back (`drained: false`): a drained member gets no new
 * requests from any balancer, its requests in flight finish. The state lives on the member and
 * carries over reloads that keep it (same pool, same URL). Unknown names answer 404.
 */
export function setMemberDrained(rt: Runtime, poolName: string, memberName: string, drained: boolean): AdminAnswer {
  const pool = rt.pools.get(poolName)
  if (pool === undefined) {
    return { status: 404, body: { error: `no pool ${JSON.stringify(poolName)} (pools: ${[...rt.pools.keys()].join(', ') || 'none'})` } }
  }
  const member = pool.member(memberName)
  if (member === undefined) {
    return { status: 404, body: { error: `no member ${JSON.stringify(memberName)} in pool ${JSON.stringify(poolName)} (members: ${pool.members.map((m) => m.name).join(', ')})` } }
  }
  const changed = pool.setDrained(member, drained)
  const serving = pool.members.filter((m) => !m.drained).length
  return {
    status: 200,
    body: {
      pool: pool.name,
      member: member.name,
      drained: member.drained,
      changed,
      in_flight: member.inFlight,
      ...(serving === 0 ? { warning: 'every member of this pool is drained: its requests get 503' } : {})
    }
  }
}
