#!/usr/bin/env bash
# Whole-system benchmarks on this machine, each scenario as Herald/floor
# ratios from one run: for every scenario the same `herald bench` load runs
# first against the floor server (../shared/floor, FLOOR_SRC: a minimal
# in-memory SSE fan-out, the cost floor of the ratio targets) and then
# against a fresh Herald node on its own redis-server, on loopback. Prints
# one JSON line per server and one ratio line per scenario:
#   {"scenario": "fanout10k", "set": "tuned", "ratio": {"latency_p99": 1.3, ...}}
# Bounded in time and count.
#
#   deploy/local/bench.sh [scenario ...]   (default: both sets below)
#   tuned set (default-list: idle10k fanout10k max1k max1k-batch topics10k overload):
#     idle10k fanout10k max1k max1k-batch topics10k overload fast2k slow2k
#     fanout2k topics10k-floor pubonly connectmax publishmax
#   default-configuration set (nothing tuned, no HERALD_* environment):
#     default (= all of:) default:connect2k default:fanout2k default:topics10k
#     default:fanout10k default:overload
#   scale (in the default run): deploy/local/scale.sh, 4 nodes, 51,000
#     streams over 3 load processes (issue 25).
#   NOFLOOR=1 skips the floor runs (Herald alone, as before).
#   wsfanout10k (not in a set): fanout10k's load from deploy/local/sseload
#     against the floor, Herald over SSE and Herald over WebSocket, in one
#     run (`herald bench` has no WebSocket client; ADR 0023).
#
# The tuned set runs the node with the publish and connect-rate limits of
# the protection layers lifted (they would cap the throughput being
# measured); breakers, stream caps and queue bounds stay at their defaults.
# The default set runs it exactly as shipped: what a fresh node does with
# nothing tuned (issue 20: 2,000 streams opened at 1,000/s, none shed; one
# tenant at 2,000 publishes/s over 10,000 topics, no 429).
# fanout10k, topics10k and overload open their streams at 1,000/s: faster,
# with the admission limit lifted, the connect phase can saturate both cores
# and open the Redis breaker, and its retry storm runs into the measured
# window (docs/benchmarks.md, "First deliveries and connect storms").
# max1k's 32 publishers send one event per request, each as soon as the
# previous one is acknowledged; max1k-batch sends batches of 50 from 4
# publishers, the throughput ceiling, whose 200 events in flight put a floor
# under its latency (ADR 0013); the floor takes one event per request, so
# max1k-batch has no floor run. topics10k-floor is topics10k plus 500 bare
# round trips per second (GET /healthz on the node, PING on Redis) timed
# under the same load (docs/benchmarks.md, eighth session).
set -euo pipefail
cd "$(dirname "$0")/../.."
HERALD=${HERALD:-bin/herald}
# SERVER: the herald binary run as the node (default: HERALD, which also
# drives the load); set it to an older build for a before/after pair.
PORT_REDIS=${PORT_REDIS:-16611}
PORT_HTTP=${PORT_HTTP:-18611}
PORT_ADMIN=${PORT_ADMIN:-18612}
work=$(mktemp -d)
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
URL=http://127.0.0.1:$PORT_HTTP

start_node() { # $@: extra serve flags
  redis-server --port "$PORT_REDIS" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log" --dir "$work"
  for _ in $(seq 50); do redis-cli -p "$PORT_REDIS" ping >/dev/null 2>&1 && break; sleep 0.1; done
  local env=()
  if [ "$set" = tuned ]; then
    env=(HERALD_PROTECTION__INGRESS__PUBLISH_QPS=0 HERALD_PROTECTION__INGRESS__TOPIC_QPS=0
      HERALD_PROTECTION__ADMISSION__CONNECT_RATE=100000 HERALD_PROTECTION__BREAKER__SLOW_THRESHOLD=${SLOW_THRESHOLD:-1s})
  fi
  env "${env[@]}" "${SERVER:-$HERALD}" serve --dev --redis "redis://127.0.0.1:$PORT_REDIS" --listen "127.0.0.1:$PORT_HTTP" \
    --admin-listen "127.0.0.1:$PORT_ADMIN" --log-level warn "$@" >"$work/herald.log" 2>&1 &
  echo $! >"$work/herald.pid"
  for _ in $(seq 50); do curl -fsS "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
}
stop_node() {
  kill "$(cat "$work/herald.pid")" 2>/dev/null || true
  wait "$(cat "$work/herald.pid")" 2>/dev/null || true
  redis-cli -p "$PORT_REDIS" shutdown nosave >/dev/null 2>&1 || true
  rm -f "$work"/*.pid
  sleep 1
}
floor_bin() {
  [ -x "$work/floor" ] || go build -C "${FLOOR_SRC:-../shared/floor}" -o "$work/floor" .
}
start_floor() {
  floor_bin
  "$work/floor" -addr "127.0.0.1:$PORT_HTTP" >"$work/floor.log" 2>&1 &
  echo $! >"$work/floor.pid"
  for _ in $(seq 50); do curl -fsS "$URL/stats" >/dev/null 2>&1 && break; sleep 0.1; done
}
stop_floor() {
  kill "$(cat "$work/floor.pid")" 2>/dev/null || true
  wait "$(cat "$work/floor.pid")" 2>/dev/null || true
  rm -f "$work/floor.pid"
  sleep 1
}
tag() { # scenario, server: label a report line
  jq -c --arg s "$1" --arg set "$set" '{scenario: $s, set: $set} + .'
}
run() { # name, bench flags...
  local name=$1; shift
  local floor=
  if [ -z "${NOFLOOR:-}" ] && [[ ! " $* " =~ " --batch " ]]; then
    start_floor
    echo "== $name ($set): floor: herald bench --server floor $*" >&2
    "$HERALD" bench --server floor --url "$URL" --server-pid "$(cat "$work/floor.pid")" --json "$@" | tag "$name" >"$work/floor.json"
    stop_floor
    floor=$work/floor.json
    cat "$floor"
  fi
  start_node
  echo "== $name ($set): herald: herald bench $*" >&2
  "$HERALD" bench --url "$URL" --admin-url "http://127.0.0.1:$PORT_ADMIN" --server-pid "$(cat "$work/herald.pid")" \
    --redis-pid "$(cat "$work/redis.pid")" --json "$@" | tag "$name" >"$work/herald.json"
  stop_node
  cat "$work/herald.json"
  [ -n "$floor" ] || return 0
  # Herald/floor for each figure both runs measured (>1: Herald costs more
  # or is slower; deliveries_per_s >1: Herald delivered more).
  jq -c -n --slurpfile h "$work/herald.json" --slurpfile f "$floor" --arg s "$name" --arg set "$set" '
    def r(k): if ($f[0][k] // 0) > 0 and ($h[0][k] // 0) > 0 then (($h[0][k] / $f[0][k]) * 100 | round / 100) else null end;
    {scenario: $s, set: $set, ratio: ({
      latency_p50: r("latency_p50_ms"), latency_p99: r("latency_p99_ms"),
      cpu_per_delivery: r("server_cpu_us_per_delivery"), connect_cpu_per_stream: r("server_connect_cpu_us_per_stream"),
      rss_per_stream: r("server_rss_per_stream_kib"), rss_growth: r("server_rss_growth_mib"), rss_publish_growth: r("server_rss_publish_growth_mib"),
      deliveries_per_s: r("deliveries_per_s"), publish_p50: r("publish_p50_ms")
    } | with_entries(select(.value != null))),
    herald: {lost: $h[0].lost, duplicated: $h[0].duplicated, publish_errors: $h[0].publish_errors,
      connect_retries: $h[0].connect_retries, redis_cpu_s: $h[0].redis_cpu_s},
    floor: {lost: $f[0].lost, duplicated: $f[0].duplicated}}'
}

# wsfanout10k: fanout10k's load (10,000 streams of one topic opened at
# 1,000/s, 5 events/s from 2 publishers, 20 s) from deploy/local/sseload
# against the floor, then a Herald node over SSE (/v1/stream), then the same
# node configuration over WebSocket (/v1/ws): CPU per delivery of the two
# transports side by side (docs/benchmarks.md, "WebSocket").
wsfanout10k() {
  local load=(-subscribers 10000 -rate 5 -publishers 2 -duration "${WS_DURATION:-20s}" -connect-rate 1000 -drain 5s)
  go build -o "$work/sseload" ./deploy/local/sseload
  start_floor
  echo "== wsfanout10k: floor" >&2
  "$work/sseload" -sub "$URL/sse?topic=t" -pub "$URL/publish?topic=t" -server-pid "$(cat "$work/floor.pid")" "${load[@]}" |
    tag wsfanout10k | jq -c '{server: "floor"} + .'
  stop_floor
  local transport sub
  for transport in sse ws; do
    start_node
    echo "== wsfanout10k: herald $transport" >&2
    sub="$URL/v1/stream?topic=t"
    [ "$transport" = ws ] && sub="ws://127.0.0.1:$PORT_HTTP/v1/ws?topic=t"
    "$work/sseload" -sub "$sub" -pub "$URL/v1/topics/t/events" -body '{"data":"{ts}"}' -json-body \
      -server-pid "$(cat "$work/herald.pid")" "${load[@]}" | tag wsfanout10k | jq -c --arg t "$transport" '{server: ("herald-" + $t)} + .'
    stop_node
  done
}

tuned_default=(idle10k fanout10k max1k max1k-batch topics10k overload)
default_set=(default:connect2k default:fanout2k default:topics10k default:fanout10k default:overload)
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=("${tuned_default[@]}" default scale)
expanded=()
for s in "${scenarios[@]}"; do
  if [ "$s" = default ]; then expanded+=("${default_set[@]}"); else expanded+=("$s"); fi
done
for s in "${expanded[@]}"; do
  set=tuned
  case $s in default:*) set=default ;; esac
  case $s in
    idle10k)   run idle10k   --subscribers 10000 --topics 100 --idle --duration 1s ;;
    fanout10k) run fanout10k --subscribers 10000 --topics 1 --rate 5 --publishers 2 --duration 20s --connect-rate 1000 ;;
    max1k)     run max1k     --subscribers 1000 --topics 1 --rate 0 --publishers 32 --duration 20s ;;
    max1k-batch) run max1k-batch --subscribers 1000 --topics 1 --rate 0 --publishers 4 --batch 50 --duration 20s ;;
    topics10k) run topics10k --subscribers 10000 --topics 10000 --rate 2000 --publishers 8 --duration 20s --connect-rate 1000 ;;
    topics10k-floor) NOFLOOR=1 run topics10k-floor --subscribers 10000 --topics 10000 --rate 2000 --publishers 8 --duration 20s --connect-rate 1000 \
                 --probe-rate 500 --probe-redis "redis://127.0.0.1:$PORT_REDIS" ;;
    overload)  run overload  --subscribers 10000 --topics 1 --rate 20 --publishers 8 --duration 20s --connect-rate 1000 ;;
    pubonly)   run pubonly   --subscribers 10 --topics 10000 --rate 2000 --publishers 8 --duration 10s ;;
    fast2k)    run fast2k    --subscribers 2000 --topics 10 --rate 100 --publishers 2 --payload 1024 --duration 30s ;;
    slow2k)    run slow2k    --subscribers 2000 --topics 10 --rate 100 --publishers 2 --payload 1024 --duration 30s --slow-fraction 0.05 --slow-bps 256 ;;
    # Capacity of this machine, which the protection defaults are derived
    # from (docs/configuration.md): streams opened as fast as the node
    # takes them, and single-event publishes over 10,000 topics as fast as
    # they are acknowledged.
    connectmax) run connectmax --subscribers 5000 --topics 100 --idle --duration 1s --connect-rate 20000 ;;
    publishmax) run publishmax --subscribers 10 --topics 10000 --rate 0 --publishers 16 --duration 10s ;;
    fanout2k)  run fanout2k  --subscribers 2000 --topics 1 --rate 20 --publishers 1 --duration 20s ;;
    wsfanout10k) wsfanout10k ;;
    scale)     HERALD=$HERALD deploy/local/scale.sh ;; # N nodes x M streams (issue 25, ADR 0026; its own ports)
    # The default configuration, nothing tuned (issue 20's acceptance loads).
    default:connect2k) run "$s" --subscribers 2000 --topics 1 --idle --duration 1s --connect-rate 1000 ;;
    default:fanout2k)  run "$s" --subscribers 2000 --topics 1 --rate 20 --publishers 1 --duration 20s --connect-rate 1000 ;;
    default:topics10k) run "$s" --subscribers 10000 --topics 10000 --rate 2000 --publishers 8 --duration 20s --connect-rate 1000 ;;
    default:fanout10k) run "$s" --subscribers 10000 --topics 1 --rate 5 --publishers 2 --duration 20s --connect-rate 1000 ;;
    default:overload)  run "$s" --subscribers 10000 --topics 1 --rate 20 --publishers 8 --duration 20s --connect-rate 1000 ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
done
