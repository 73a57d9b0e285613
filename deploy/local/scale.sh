#!/usr/bin/env bash
# Scale scenario (issue 25): N Herald nodes gossiping on loopback around one
# redis-server, M streams spread over the first LOADED nodes by several
# deploy/local/sseload processes (each under the open-file limit), the
# remaining nodes holding no stream as a control. SHAPE=shared (the
# default, issue 25's wording) puts every stream on one topic "s" at RATE
# events/s in all, published round-robin over all the nodes (each load
# process publishes RATE/processes, tagged, and counts its own events
# exactly); SHAPE=own is the shape of the runs before session 13: each load
# process on its own topic at RATE events/s, published on its own node. Prints one JSON line per node (RSS idle and loaded, KiB per
# stream, CPU per delivery, connects and disconnects by reason) and one
# summary line (streams, p99, drops, lost and duplicated events, reconnects
# by cause, refusals, the load processes' own CPU per delivery, refused
# load processes). The load's streams resume like Herald clients (Last-Event-ID
# after the server's retry delay) when the server cuts them off, so "lost"
# and "duplicated" are exact per stream (each event carries its sequence
# number) and "drops" (expected - received) only says how many deliveries
# came late ("deliveries" counts every event every stream got; with
# SHAPE=shared "received" and "expected" cover each process's own events).
# Bounded: every process it starts is stopped on exit; the publishing phase
# lasts DURATION.
#
#   deploy/local/scale.sh                      # 4 nodes, 51,000 streams on 3 of them
#   NODES=1 LOADED=1 STREAMS=17000 deploy/local/scale.sh   # the single-node figure
#   NODES=4 LOADED=4 STREAMS=74000 PER_PROC=18500 deploy/local/scale.sh   # the 74,000-stream run (issue 25's shape)
#   SHAPE=own deploy/local/scale.sh            # a topic per load process, as before session 13
#   NODES=3 LOADED=3 GOSSIP=0 deploy/local/scale.sh   # the same 51,000 streams on 3 nodes without gossip
#
# NODES=1 runs without gossip (no --gossip-listen): the single-node figure
# the cluster's per-stream RSS is compared with (docs/benchmarks.md).
# GOSSIP=0 runs NODES independent nodes, no gossip: the single-node figure
# under the same concurrent load (the same load processes and the same CPU
# contention as a gossiping run), so the two differ only by the cluster.
# SSELOAD=path runs a prebuilt load tool instead of building
# deploy/local/sseload (a before/after pair); BODY is its publish body (a
# tool from before {seq} needs BODY='{"data":"{ts}"}').
set -euo pipefail
cd "$(dirname "$0")/../.."
HERALD=${HERALD:-bin/herald}
NODES=${NODES:-4}
LOADED=${LOADED:-3}
STREAMS=${STREAMS:-51000}
PER_PROC=${PER_PROC:-17000}    # streams per load process (open files are capped at 20,000 per process)
RATE=${RATE:-1}                # events/s: on the shared topic (SHAPE=shared), on each load process's topic (SHAPE=own)
SHAPE=${SHAPE:-shared}         # shared: one topic, publishes round-robin over the nodes; own: a topic per load process on its node
DURATION=${DURATION:-40s}      # publishing phase of each load process
CONNECT_RATE=${CONNECT_RATE:-500} # new streams/s per load process
DRAIN=${DRAIN:-20s}            # after publishing: time for late and resumed streams to catch up
BODY=${BODY:-'{"data":"{ts} {seq}"}'}
# HOST: the loopback address every process listens on. Another 127/8
# address (127.0.0.2) keeps clear of the ephemeral ports that other loopback
# load on the machine holds on 127.0.0.1 (a bind there then fails).
HOST=${HOST:-127.0.0.1}
PORT_REDIS=${PORT_REDIS:-16711}
PORT_BASE=${PORT_BASE:-18711}  # node i: HTTP PORT_BASE+3i, admin +1, gossip +2
[ "$PER_PROC" -le 19000 ] || { echo "scale.sh: PER_PROC must stay under the 20,000 open-file limit" >&2; exit 2; }
[ "$LOADED" -le "$NODES" ] || { echo "scale.sh: LOADED > NODES" >&2; exit 2; }
# A node is one process too: it holds at most ~19,900 streams under the
# same limit, so spread STREAMS over enough LOADED nodes.
[ $((STREAMS / LOADED)) -le 19000 ] || { echo "scale.sh: over 19,000 streams per node (open-file limit); raise LOADED" >&2; exit 2; }

work=$(mktemp -d)
cleanup() {
  for f in "$work"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  redis-cli -h "$HOST" -p "$PORT_REDIS" shutdown nosave >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
if [ -n "${SSELOAD:-}" ]; then cp "$SSELOAD" "$work/sseload"; else go build -o "$work/sseload" ./deploy/local/sseload; fi

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# A node too busy to answer within the timeout reads as 0 (and {} below)
# rather than ending the run: on a loaded machine a scrape can be slow.
streams_open() { # admin port -> streams open on that node
  { curl -fsS --max-time 30 "http://$HOST:$1/metrics" 2>/dev/null || true; } | awk '/^herald_streams_open[ {]/ {s += $NF} END {print s + 0}'
}

redis-server --port "$PORT_REDIS" --bind $HOST --save '' --appendonly no \
  --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log" --dir "$work"
for _ in $(seq 50); do redis-cli -h "$HOST" -p "$PORT_REDIS" ping >/dev/null 2>&1 && break; sleep 0.1; done

# MAX_SCHED_DELAY: admission's scheduling-delay bound (ADR 0023); "" leaves
# the node's default (a build from before it has no such key).
sched=()
[ -n "${MAX_SCHED_DELAY-500ms}" ] && sched=("HERALD_PROTECTION__ADMISSION__MAX_SCHED_DELAY=${MAX_SCHED_DELAY-500ms}")
seed=""
for i in $(seq 0 $((NODES - 1))); do
  http=$((PORT_BASE + 3 * i)); admin=$((http + 1)); gossip=$((http + 2))
  cluster=()
  if [ "$NODES" -gt 1 ] && [ "${GOSSIP:-1}" != 0 ]; then
    cluster=(--gossip-listen "$HOST:$gossip")
    [ -n "$seed" ] && cluster+=(--join "$seed")
    seed=${seed:-$HOST:$gossip}
  fi
  env "${sched[@]}" HERALD_PROTECTION__INGRESS__PUBLISH_QPS=0 HERALD_PROTECTION__INGRESS__TOPIC_QPS=0 \
  HERALD_PROTECTION__ADMISSION__CONNECT_RATE=100000 HERALD_PROTECTION__ADMISSION__MAX_STREAMS=0 \
  HERALD_PROTECTION__ADMISSION__MAX_STREAMS_PER_IP=0 HERALD_CLUSTER__REBALANCE_WINDOW=0s \
  HERALD_PROTECTION__BREAKER__SLOW_THRESHOLD=${SLOW_THRESHOLD:-1s} \
  "$HERALD" serve --dev --node-name "n$i" --redis "redis://$HOST:$PORT_REDIS" --listen "$HOST:$http" \
    --admin-listen "$HOST:$admin" --log-level warn "${cluster[@]}" >"$work/n$i.log" 2>&1 &
  echo $! >"$work/n$i.pid"
  for _ in $(seq 100); do curl -fsS "http://$HOST:$http/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  # A port taken meanwhile (loopback ephemeral ports of other load share
  # this range) stops the node: say so rather than measure three nodes.
  kill -0 "$(cat "$work/n$i.pid")" 2>/dev/null || { echo "scale.sh: node n$i did not start:" >&2; cat "$work/n$i.log" >&2; exit 3; }
done
if [ "$NODES" -gt 1 ] && [ "${GOSSIP:-1}" != 0 ]; then # every node sees every other alive
  for _ in $(seq 100); do
    n=$({ curl -fsS --max-time 5 "http://$HOST:$((PORT_BASE + 1))/v1/cluster/members" 2>/dev/null || true; } | jq '[.members[] | select(.state == "alive")] | length' 2>/dev/null || true)
    [ "$n" = "$NODES" ] && break; sleep 0.2
  done
fi
sleep 3
declare -A idle
for i in $(seq 0 $((NODES - 1))); do idle[$i]=$(rss_kib "$(cat "$work/n$i.pid")"); done

# Load: STREAMS over the LOADED nodes, PER_PROC per process at most.
per_node=$((STREAMS / LOADED))
case "$SHAPE" in shared | own) ;; *) echo "scale.sh: SHAPE=$SHAPE: want shared or own" >&2; exit 2 ;; esac
nprocs=$(( LOADED * ((per_node + PER_PROC - 1) / PER_PROC) ))
pubs=""
for i in $(seq 0 $((NODES - 1))); do pubs="$pubs${pubs:+,}http://$HOST:$((PORT_BASE + 3 * i))/v1/topics/s/events"; done
procs=0
declare -A want
for i in $(seq 0 $((LOADED - 1))); do
  http=$((PORT_BASE + 3 * i)); left=$per_node; want[$i]=$per_node
  while [ "$left" -gt 0 ]; do
    n=$((left < PER_PROC ? left : PER_PROC)); left=$((left - n))
    if [ "$SHAPE" = shared ]; then
      shape=(-sub "http://$HOST:$http/v1/stream?topic=s" -pub "$pubs" -tag "p$procs" -rate "$(jq -n "$RATE / $nprocs")")
    else
      shape=(-sub "http://$HOST:$http/v1/stream?topic=s$procs" -pub "http://$HOST:$http/v1/topics/s$procs/events" -rate "$RATE")
    fi
    "$work/sseload" "${shape[@]}" \
      -body "$BODY" -json-body -subscribers "$n" -connect-rate "$CONNECT_RATE" \
      -duration "$DURATION" -drain "$DRAIN" >"$work/load$procs.json" 2>"$work/load$procs.err" &
    echo $! >"$work/load$procs.pid"
    procs=$((procs + 1))
  done
done
echo "== scale: $NODES nodes, $STREAMS streams on $LOADED of them, $procs load processes, SHAPE=$SHAPE" >&2

# Wait until the loaded nodes hold their streams (or a load process died).
connect_limit=$(( per_node / CONNECT_RATE + 120 ))
for _ in $(seq "$connect_limit"); do
  done_all=1
  for i in $(seq 0 $((LOADED - 1))); do
    [ "$(streams_open $((PORT_BASE + 3 * i + 1)))" -ge "${want[$i]}" ] || done_all=0
  done
  alive=0; for p in $(seq 0 $((procs - 1))); do if kill -0 "$(cat "$work/load$p.pid")" 2>/dev/null; then alive=$((alive + 1)); fi; done
  [ "$done_all" = 1 ] || [ "$alive" -lt "$procs" ] && break
  sleep 1
done
sleep 2
declare -A cpu0 held
for i in $(seq 0 $((NODES - 1))); do
  cpu0[$i]=$(cpu_ticks "$(cat "$work/n$i.pid")")
  held[$i]=$(streams_open $((PORT_BASE + 3 * i + 1)))
done
t0=$(date +%s.%N)
sleep "$(( ${DURATION%s} / 2 ))"
declare -A loaded
for i in $(seq 0 $((NODES - 1))); do loaded[$i]=$(rss_kib "$(cat "$work/n$i.pid")"); done
refused=0
for p in $(seq 0 $((procs - 1))); do wait "$(cat "$work/load$p.pid")" || refused=$((refused + 1)); rm -f "$work/load$p.pid"; done
t1=$(date +%s.%N)
hz=$(getconf CLK_TCK)

jq -s --argjson procs "$procs" --argjson refused "$refused" --arg shape "$SHAPE" \
  '{scenario: "scale", shape: $shape, load_processes: $procs, refused_processes: $refused,
    streams: (map(.streams) | add), received: (map(.received) | add), expected: (map(.expected) | add),
    deliveries: (map(.deliveries // .received) | add),
    drops: ((map(.expected) | add) - (map(.received) | add)), publish_errors: (map(.publish_errors) | add),
    lost: (if all(has("lost")) then (map(.lost) | add) else null end),
    duplicated: (if all(has("duplicated")) then (map(.duplicated) | add) else null end),
    reconnects: (map(.reconnects // {} | to_entries[]) | group_by(.key) | map({key: .[0].key, value: (map(.value) | add)}) | from_entries),
    refused: (map(.refused | if type == "object" then to_entries[] else {key: "any", value: .} end) | group_by(.key) | map({key: .[0].key, value: (map(.value) | add)}) | from_entries),
    load_cpu_s: (map(.self_cpu_s // 0) | add * 100 | round / 100),
    load_cpu_us_per_delivery: (if (map(.deliveries // .received) | add) > 0 then ((map(.self_cpu_s // 0) | add) / (map(.deliveries // .received) | add) * 1e6 | . * 100 | round / 100) else null end),
    p50_ms: (map(.p50_ms) | max), p99_ms: (map(.p99_ms) | max), max_ms: (map(.max_ms) | max)}' "$work"/load*.json >"$work/summary.json" || true
for p in $(seq 0 $((procs - 1))); do
  if [ -s "$work/load$p.err" ]; then sed "s/^/load$p: /" "$work/load$p.err" >&2; fi
done
# Deliveries: every event every stream got (with SHAPE=shared, "received"
# counts only each load process's own events).
received=$(jq '.deliveries // .received // 0' "$work/summary.json" 2>/dev/null || true)
received=${received:-0}
counts() { # admin port, metric, label -> {"label value": count}
  { curl -fsS --max-time 30 "http://$HOST:$1/metrics" 2>/dev/null || true; } |
    awk -F"$3=\"" -v m="^$2[_a-z]*[{]" '$0 ~ m && NF > 1 {split($2, a, "\""); n = $NF; sub(/.* /, "", n); c[a[1]] += n}
      END {printf "{"; s = ""; for (k in c) {printf "%s\"%s\": %d", s, k, c[k]; s = ", "} printf "}"}'
}
connects() { counts "$1" herald_stream_connects result; }
for i in $(seq 0 $((NODES - 1))); do
  pid=$(cat "$work/n$i.pid")
  cpu=$(( $(cpu_ticks "$pid") - ${cpu0[$i]} ))
  conn=$(connects $((PORT_BASE + 3 * i + 1)))
  disc=$(counts $((PORT_BASE + 3 * i + 1)) herald_stream_disconnects reason)
  jq -nc --arg node "n$i" --argjson streams "${held[$i]}" --argjson idle "${idle[$i]}" --argjson loaded "${loaded[$i]}" \
    --argjson cpu "$cpu" --argjson hz "$hz" --argjson connects "${conn:-{\}}" --argjson disconnects "${disc:-{\}}" --argjson received "$received" --arg t0 "$t0" --arg t1 "$t1" \
    '{scenario: "scale", node: $node, streams: $streams, connects: $connects, disconnects: $disconnects, rss_idle_mib: ($idle / 1024 | . * 10 | round / 10),
      rss_loaded_mib: ($loaded / 1024 | . * 10 | round / 10), rss_growth_mib: (($loaded - $idle) / 1024 | . * 10 | round / 10),
      kib_per_stream: (if $streams > 0 then (($loaded - $idle) / $streams | . * 100 | round / 100) else null end),
      cpu_s: ($cpu / $hz), window_s: (($t1 | tonumber) - ($t0 | tonumber) | . * 10 | round / 10),
      cluster_cpu_us_per_delivery_share: (if $received > 0 then ($cpu / $hz / $received * 1e6 | . * 100 | round / 100) else null end)}'
done
cat "$work/summary.json"
grep -h -i "breaker\|store unavailable" "$work"/n*.log | head -5 >&2 || true
