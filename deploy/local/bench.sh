#!/usr/bin/env bash
# Whole-system benchmarks of issue "Herald core" on this machine: starts its
# own redis-server and Herald node on loopback, runs `herald bench` for each
# scenario, prints one JSON report per scenario. Bounded in time and count.
#
#   deploy/local/bench.sh [scenario ...]   (default: all)
#   scenarios: idle10k fanout10k max1k max1k-batch topics10k overload fast2k slow2k
#              scale (deploy/local/scale.sh: 4 nodes, 51,000 streams over 3 load processes)
#              fanout2k vsfloor topics10k-floor pubonly (not in the default list)
#
# The node runs with the publish and connect-rate limits of the protection
# layers lifted (they would cap the throughput being measured); breakers,
# stream caps and queue bounds stay at their defaults. fanout10k, topics10k
# and overload open their streams at 1,000/s: faster, with the admission limit
# lifted, the connect phase can saturate both cores and open the Redis
# breaker, and its retry storm runs into the measured window
# (docs/benchmarks.md, "First deliveries and connect storms").
# max1k's 32 publishers send one event per request, each as soon as the
# previous one is acknowledged; max1k-batch sends batches of 50 from 4
# publishers, the throughput ceiling, whose 200 events in flight put a floor
# under its latency (ADR 0013). topics10k-floor is topics10k plus 500 bare
# round trips per second (GET /healthz on the node, PING on Redis) timed
# under the same load: the floor under its publish latency
# (docs/benchmarks.md, eighth session).
set -euo pipefail
cd "$(dirname "$0")/../.."
HERALD=${HERALD:-bin/herald}
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
  HERALD_PROTECTION__INGRESS__PUBLISH_QPS=0 HERALD_PROTECTION__INGRESS__TOPIC_QPS=0 \
  HERALD_PROTECTION__ADMISSION__CONNECT_RATE=100000 HERALD_PROTECTION__BREAKER__SLOW_THRESHOLD=${SLOW_THRESHOLD:-1s} \
  "$HERALD" serve --dev --redis "redis://127.0.0.1:$PORT_REDIS" --listen "127.0.0.1:$PORT_HTTP" \
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
run() { # name, bench flags...
  local name=$1; shift
  start_node
  echo "== $name: herald bench $*" >&2
  "$HERALD" bench --url "$URL" --admin-url "http://127.0.0.1:$PORT_ADMIN" --server-pid "$(cat "$work/herald.pid")" --json "$@" | sed "1s/^{/{\"scenario\": \"$name\",/"
  stop_node
}

# vsfloor: the same load (2,000 streams of one topic, 20 events/s, one
# publisher) from deploy/local/sseload against the floor server
# (../shared/floor, FLOOR_SRC) and then against a Herald node with its
# default configuration, one JSON line each: latency and CPU per delivery
# side by side (docs/benchmarks.md, "Latency-first defaults").
vsfloor() {
  local load=(-subscribers 2000 -rate 20 -publishers 1 -duration "${VSFLOOR_DURATION:-20s}")
  go build -C "${FLOOR_SRC:-../shared/floor}" -o "$work/floor" . && go build -o "$work/sseload" ./deploy/local/sseload
  "$work/floor" -addr "127.0.0.1:$PORT_HTTP" >"$work/floor.log" 2>&1 &
  echo $! >"$work/floor.pid"
  for _ in $(seq 50); do curl -fsS "$URL/stats" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "== vsfloor: floor" >&2
  "$work/sseload" -sub "$URL/sse?topic=t" -pub "$URL/publish?topic=t" -server-pid "$(cat "$work/floor.pid")" "${load[@]}" |
    sed '1s/^{/{"scenario": "vsfloor", "server": "floor",/'
  kill "$(cat "$work/floor.pid")"; wait "$(cat "$work/floor.pid")" 2>/dev/null || true; rm -f "$work/floor.pid"; sleep 1
  start_node
  echo "== vsfloor: herald" >&2
  "$work/sseload" -sub "$URL/v1/stream?topic=t" -pub "$URL/v1/topics/t/events" -body '{"data":"{ts}"}' -json-body \
    -server-pid "$(cat "$work/herald.pid")" "${load[@]}" | sed '1s/^{/{"scenario": "vsfloor", "server": "herald",/'
  stop_node
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(idle10k fanout10k max1k max1k-batch topics10k overload scale)
for s in "${scenarios[@]}"; do
  case $s in
    idle10k)   run idle10k   --subscribers 10000 --topics 100 --idle --duration 1s ;;
    fanout10k) run fanout10k --subscribers 10000 --topics 1 --rate 5 --publishers 2 --duration 20s --connect-rate 1000 ;;
    max1k)     run max1k     --subscribers 1000 --topics 1 --rate 0 --publishers 32 --duration 20s ;;
    max1k-batch) run max1k-batch --subscribers 1000 --topics 1 --rate 0 --publishers 4 --batch 50 --duration 20s ;;
    topics10k) run topics10k --subscribers 10000 --topics 10000 --rate 2000 --publishers 8 --duration 20s --connect-rate 1000 ;;
    topics10k-floor) run topics10k-floor --subscribers 10000 --topics 10000 --rate 2000 --publishers 8 --duration 20s --connect-rate 1000 \
                 --probe-rate 500 --probe-redis "redis://127.0.0.1:$PORT_REDIS" ;;
    overload)  run overload  --subscribers 10000 --topics 1 --rate 20 --publishers 8 --duration 20s --connect-rate 1000 ;;
    pubonly)   run pubonly   --subscribers 10 --topics 10000 --rate 2000 --publishers 8 --duration 10s ;;
    fast2k)    run fast2k    --subscribers 2000 --topics 10 --rate 100 --publishers 2 --payload 1024 --duration 30s ;;
    slow2k)    run slow2k    --subscribers 2000 --topics 10 --rate 100 --publishers 2 --payload 1024 --duration 30s --slow-fraction 0.05 --slow-bps 256 ;;
    fanout2k)  run fanout2k  --subscribers 2000 --topics 1 --rate 20 --publishers 1 --duration 20s ;;
    vsfloor)   vsfloor ;;
    scale)     HERALD=$HERALD deploy/local/scale.sh ;; # N nodes x M streams (issue 25; its own ports)
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
done
