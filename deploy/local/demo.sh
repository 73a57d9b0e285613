#!/usr/bin/env bash
# Local two-region demo: regions "eu" and "us", each with two herald nodes,
# its own redis-server primary (AOF) and a replica of the other region's
# primary — all local processes on 127.0.0.1. Ctrl-C stops everything.
#
#   make demo            (builds bin/herald first)
#
# Ports: eu nodes 8101/8102 (admin 9101/9102), us nodes 8201/8202 (admin
# 9201/9202); Redis eu primary 7101, us primary 7201, eu's replica of us
# 7102, us's replica of eu 7202. Override the base with DEMO_PORT_SHIFT.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin/herald}
command -v redis-server >/dev/null || { echo "demo: redis-server not found (make deps installs it as root)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "demo: $BIN missing: run make build" >&2; exit 1; }
S=${DEMO_PORT_SHIFT:-0}
DIR=$(mktemp -d /tmp/herald-demo.XXXXXX)
PIDS=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "demo: stopping"
  kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  for p in 7101 7102 7201 7202; do redis-cli -p $((p + S)) shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "$DIR"
}
trap cleanup INT TERM EXIT

redis() { # name port [replicaof-port]
  mkdir -p "$DIR/$1"
  local args=(--port $(($2 + S)) --bind 127.0.0.1 --dir "$DIR/$1" --save '' --daemonize yes
    --pidfile "$DIR/$1/pid" --logfile "$DIR/$1/log" --repl-backlog-size 64mb)
  if [ -n "${3:-}" ]; then args+=(--replicaof 127.0.0.1 $(($3 + S))); else args+=(--appendonly yes); fi
  redis-server "${args[@]}"
}
redis eu-primary 7101
redis us-primary 7201
redis eu-replica-of-us 7102 7201
redis us-replica-of-eu 7202 7101

KEY=$("$BIN" gossip-key)
node() { # region n port admin gossip wan primary remote-name remote-port [joins...]
  local region=$1 n=$2 port=$(($3 + S)) admin=$(($4 + S)) gossip=$(($5 + S)) wan=$(($6 + S)) primary=$(($7 + S)) rname=$8 rport=$(($9 + S))
  shift 9
  HERALD_FEDERATION__EVACUATION_WINDOW=10s "$BIN" serve --dev --node-name "$region$n" --region "$region" \
    --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$admin \
    --redis redis://127.0.0.1:$primary --remote-redis "$rname=redis://127.0.0.1:$rport" \
    --gossip-listen 127.0.0.1:$gossip --wan-listen 127.0.0.1:$wan --gossip-key "$KEY" \
    --advertise-url http://127.0.0.1:$port "$@" >"$DIR/$region$n.log" 2>&1 &
  PIDS+=($!)
}
ready() { for _ in $(seq 100); do curl -sf "http://127.0.0.1:$(($1 + S))/readyz" >/dev/null && return; sleep 0.1; done; }
node eu 1 8101 9101 7301 7401 7101 us 7102
ready 8101 # the seed of both pools
node eu 2 8102 9102 7302 7402 7101 us 7102 --join 127.0.0.1:$((7301 + S)) --wan-join 127.0.0.1:$((7401 + S))
node us 1 8201 9201 7311 7411 7201 eu 7202 --wan-join 127.0.0.1:$((7401 + S))
node us 2 8202 9202 7312 7412 7201 eu 7202 --join 127.0.0.1:$((7311 + S)) --wan-join 127.0.0.1:$((7401 + S))

for port in 8102 8201 8202; do ready $port; done
EU=http://127.0.0.1:$((8101 + S)); EU2=http://127.0.0.1:$((8102 + S)); US=http://127.0.0.1:$((8201 + S)); US2=http://127.0.0.1:$((8202 + S))
cat <<MSG

Herald two-region demo is running (logs in $DIR)

  region eu   $EU  $EU2   admin :$((9101 + S)) :$((9102 + S))   redis primary :$((7101 + S)), replica of us :$((7102 + S))
  region us   $US  $US2   admin :$((9201 + S)) :$((9202 + S))   redis primary :$((7201 + S)), replica of eu :$((7202 + S))

  watch (fails over along eu, then the alternates the server names):
      $BIN tail --url $EU --url $EU2 --topic demo
  publish in each region:
      $BIN publish --url $EU --topic demo --data from-eu
      $BIN publish --url $US --topic demo --data from-us
  region view (lag per origin, other regions, evacuation):
      curl -s http://127.0.0.1:$((9101 + S))/v1/region
  evacuate eu (streams move to us with herald.moved; publishes there get 503 + alternates):
      curl -X POST http://127.0.0.1:$((9101 + S))/v1/region/evacuate -d '{"active":true}'
      curl -X POST http://127.0.0.1:$((9101 + S))/v1/region/evacuate -d '{"active":false}'
  kill region eu whole (nodes and its Redis) and watch the tail continue in us:
      kill -9 ${PIDS[0]} ${PIDS[1]}; kill -9 \$(cat $DIR/eu-primary/pid $DIR/eu-replica-of-us/pid)

Ctrl-C stops the demo.
MSG
wait
