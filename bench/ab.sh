#!/usr/bin/env bash
# Side-by-side A/B of Switchyard builds (and a bare node:http + undici proxy) in ONE run, wrk
# runs interleaved and rotated every round, CPU µs/req of each proxy's process tree from /proc.
# On a shared 2-core box absolute figures move a lot between runs; the columns of one run compare.
#
#   bench/ab.sh ROUNDS DURATION_S "PATHS" NAME=CHECKOUT[@w2] | NAME=bare ...
#   e.g. bench/ab.sh 3 4 "/u/small /c/small /u/big /c/big" before=/tmp/sy-before after=. bare=bare
# Each CHECKOUT must be built (dist/). @w2 runs it with workers: 2. bare: bench/bare-proxy.mjs.
# CONNS=50 by default; CONNS=1 measures each request alone (no batching per event-loop turn),
# which moves far less when other processes load the machine. The min over rounds is printed
# too: interference only ever adds CPU.
set -u
CONNS=${CONNS:-50}; THREADS=$(( CONNS > 1 ? 2 : 1 ))
ROUNDS=$1; DUR=$2; PATHS=$3; shift 3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
START=$(pwd)
W=$(mktemp -d /tmp/sy-ab.XXXXXX); cd "$W"
TCK=$(getconf CLK_TCK)
node "$HERE/dist/bench/upstream.js" --port 19511 < /dev/zero > up1.log 2>&1 & U1=$!
node "$HERE/dist/bench/upstream.js" --port 19512 < /dev/zero > up2.log 2>&1 & U2=$!
PIDS=($U1 $U2); NAMES=(); PORTS=(); ROOTS=()
trap 'kill ${PIDS[*]} 2>/dev/null; rm -rf "$W"' EXIT
i=0
for spec in "$@"; do
  name=${spec%%=*}; what=${spec#*=}; port=$((19520+i)); admin=$((19540+i)); workers=1
  [[ $what == *@w2 ]] && { workers=2; what=${what%@w2}; }
  if [[ $what == bare ]]; then
    PORT=$port UPSTREAMS=http://127.0.0.1:19511,http://127.0.0.1:19512 node "$HERE/bench/bare-proxy.mjs" > "$name.log" 2>&1 & pid=$!
  else
    what=$(cd "$START" && cd "$what" && pwd)
    cat > "$name.yaml" <<Y
listen: { host: 127.0.0.1, port: $port }
admin: { host: 127.0.0.1, port: $admin }
logging: { level: warn }
workers: $workers
pools:
  backends:
    balancer: round_robin
    members:
      - { url: "http://127.0.0.1:19511", name: up-1 }
      - { url: "http://127.0.0.1:19512", name: up-2 }
routes:
  - { name: uncached, match: { path_prefix: /u/ }, pool: backends }
  - { name: cached, match: { path_prefix: /c/ }, pool: backends, cache: { enabled: true } }
cache: { store: memory }
Y
    node "$what/dist/src/cli/main.js" start --config "$name.yaml" > "$name.log" 2>&1 & pid=$!
  fi
  PIDS+=($pid); NAMES+=("$name"); PORTS+=($port); ROOTS+=($pid); i=$((i+1))
done
for port in ${PORTS[*]}; do for k in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$port/u/small" && break; sleep 0.1; done; done
treeticks() { local s=0 p; for p in $1 $(pgrep -P "$1"); do s=$((s + $(awk '{sub(/^.*\) /,""); print $12+$13}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $s; }
for p in $PATHS; do for port in ${PORTS[*]}; do wrk -t$THREADS -c$CONNS -d1s "http://127.0.0.1:$port$p" > /dev/null; done; done
declare -A US N RPS MIN
n=${#NAMES[*]}
for r in $(seq "$ROUNDS"); do
  for p in $PATHS; do
    for j in $(seq 0 $((n-1))); do
      k=$(( (j + r) % n )); name=${NAMES[$k]}; port=${PORTS[$k]}; pid=${ROOTS[$k]}
      t0=$(treeticks "$pid")
      out=$(wrk -t$THREADS -c$CONNS -d"${DUR}s" "http://127.0.0.1:$port$p")
      t1=$(treeticks "$pid")
      c=$(awk '/requests in/{print $1}' <<<"$out"); rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
      us=$(( (t1 - t0) * 1000000 / TCK ))
      US[$name$p]=$(( ${US[$name$p]:-0} + us )); N[$name$p]=$(( ${N[$name$p]:-0} + ${c:-0} ))
      per=$(awk -v u="$us" -v c="${c:-0}" 'BEGIN{ if (c>0) printf "%.1f", u/c; else print 1e9 }')
      MIN[$name$p]=$(awk -v a="${MIN[$name$p]:-1e9}" -v b="$per" 'BEGIN{ print (b<a)?b:a }')
      RPS[$name$p]=$(awk -v a="${RPS[$name$p]:-0}" -v b="${rps:-0}" 'BEGIN{print a+b}')
      echo "round $r $name $p: ${rps:-0} req/s, $(( us / (${c:-0}>0?${c:-1}:1) )) µs/req" >&2
    done
  done
done
echo "wrk -t$THREADS -c$CONNS, $ROUNDS rounds x ${DUR} s; each cell: CPU µs/req over all rounds, min over rounds, mean req/s"
printf "%-10s" path; for name in ${NAMES[*]}; do printf "%32s" "$name µs/req, min (req/s)"; done; echo
for p in $PATHS; do
  printf "%-10s" "$p"
  for name in ${NAMES[*]}; do printf "%32s" "$(awk -v u="${US[$name$p]}" -v c="${N[$name$p]}" -v m="${MIN[$name$p]}" -v r="${RPS[$name$p]}" -v n="$ROUNDS" 'BEGIN{ if (c>0) printf "%.1f, %.1f (%.0f)", u/c, m, r/n; else print "-" }')"; done; echo
done
