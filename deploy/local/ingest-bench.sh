#!/usr/bin/env bash
# Ingest throughput with log tails (docs/benchmarks.md, "Log ingest"): a
# Herald node (dev mode, ingest profile "logs.{app}.{level}" for every
# caller, ingress limits off) on its own redis-server (a free loopback
# port, no persistence), driven by deploy/local/ingestload. Everything it
# starts is stopped on exit. Extra arguments go to ingestload, e.g.
#   deploy/local/ingest-bench.sh -rate 50000 -subscribers 100 -duration 20s
# DEDUP=hash turns line dedup on.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
go build -o "$tmp/herald" ./cmd/herald
go build -o "$tmp/ingestload" ./deploy/local/ingestload
rport="$(free_port)"
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
rpid=$!; pids+=("$rpid")
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
hport="$(free_port)"
cat >"$tmp/herald.yaml" <<YAML
protection:
  ingress: {publish_qps: 0, topic_qps: 0}
ingest:
  profiles:
    - api_key: "*"
      topic: "logs.{app}.{level}"
      dedup: "${DEDUP:-none}"
YAML
"$tmp/herald" serve --dev --config "$tmp/herald.yaml" --redis "redis://127.0.0.1:$rport" \
  --listen "127.0.0.1:$hport" --admin-listen "" --log-level warn >"$tmp/herald.out" 2>&1 &
hpid=$!; pids+=("$hpid")
for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$hport/readyz" >/dev/null 2>&1 && break; sleep 0.05; done
"$tmp/ingestload" -url "http://127.0.0.1:$hport" -server-pid "$hpid" -redis-pid "$rpid" "$@"
