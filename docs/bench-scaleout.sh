#!/usr/bin/env bash
# The scale-out scenario of docs/benchmarks.md: a real cluster on one box
# (redis-server, etcd, kfakebroker as the Kafka-protocol broker, 6 `imcloud
# cloud`, one `imcloud job`, one `imcloud logic`, nothing pinned), then
# `imcloud bench` spreading --conns WebSocket connections over the 6 nodes and
# broadcasting through logic.
#   docs/bench-scaleout.sh [outdir] [conns] [extra bench flags...]
# Needs redis-server and etcd on PATH (Debian: redis-server etcd-server).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-results}
conns=${2:-100000}
shift 2 || true
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
go build -o "$out/imcloud" .
go build -o "$out/kfakebroker" ./queue/kafka/kfakebroker

pids=()    # the backends
servers=() # the imcloud processes
cleanup() { # imcloud first, and only once it has exited (cloud nodes unbind their sessions in Redis), the backends
  for p in ${servers[@]+"${servers[@]}"}; do kill -TERM "$p" 2>/dev/null || true; done
  for p in ${servers[@]+"${servers[@]}"}; do wait "$p" 2>/dev/null || true; done
  for ((k = ${#pids[@]} - 1; k >= 0; k--)); do kill -TERM "${pids[k]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() { # host:port
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; exit 1
}

redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no >"$out/redis.log" 2>&1 &
pids+=($!)
etcd --data-dir "$work/etcd" --listen-client-urls http://127.0.0.1:12379 \
  --advertise-client-urls http://127.0.0.1:12379 --listen-peer-urls http://127.0.0.1:12380 \
  >"$out/etcd.log" 2>&1 &
pids+=($!)
"$out/kfakebroker" --listen 127.0.0.1:19092 >"$out/kfake.log" 2>&1 &
pids+=($!)
wait_port 127.0.0.1:16379
wait_port 127.0.0.1:12379
wait_port 127.0.0.1:19092

export IMCLOUD_REGISTRY_BACKEND=etcd IMCLOUD_REGISTRY_ETCD_ENDPOINTS=127.0.0.1:12379
export IMCLOUD_STORE_BACKEND=redis IMCLOUD_STORE_REDIS_ADDR=127.0.0.1:16379
export IMCLOUD_QUEUE_BACKEND=kafka IMCLOUD_QUEUE_KAFKA_BROKERS=127.0.0.1:19092
export IMCLOUD_LOG_LEVEL=warn

urls=()
for i in 1 2 3 4 5 6; do
  IMCLOUD_NODE_ID=cloud$i IMCLOUD_CLOUD_TCP_ADDR=127.0.0.1:$((4100 + 10 * i)) \
    IMCLOUD_CLOUD_WS_ADDR=127.0.0.1:$((4101 + 10 * i)) IMCLOUD_CLOUD_GRPC_ADDR=127.0.0.1:$((4102 + 10 * i)) \
    "$out/imcloud" cloud --config config.yaml >"$out/cloud$i.log" 2>&1 &
  servers+=($!)
  urls+=("ws://127.0.0.1:$((4101 + 10 * i))/sub")
done
IMCLOUD_NODE_ID=job1 "$out/imcloud" job --config config.yaml >"$out/job.log" 2>&1 &
servers+=($!)
IMCLOUD_NODE_ID=logic1 "$out/imcloud" logic --config config.yaml >"$out/logic.log" 2>&1 &
servers+=($!)
for _ in $(seq 200); do curl -sf http://127.0.0.1:3111/readyz >/dev/null && break; sleep 0.1; done
# Every cloud node registered: logic lists it.
for _ in $(seq 200); do
  [ "$(curl -s http://127.0.0.1:3111/goim/nodes/instances | grep -o '"hostname"' | wc -l)" -ge 6 ] && break
  sleep 0.1
done

ws=$(IFS=,; echo "${urls[*]}")
pidlist=$(IFS=,; echo "${servers[*]}")
n=1
while [ -e "$out/scaleout-$n.json" ]; do n=$((n + 1)); done
# Three broadcasts, 5 s apart: each one is 100,000 writes (~1.5-2 CPU-seconds
# of the servers' time alone) on a box whose two cores also run the bench.
"$out/imcloud" bench --network ws --ws-url "$ws" --conns "$conns" --push all --rate 0.2 --duration 15s \
  --grace 10s --server-pids "$pidlist" --json "$@" >"$out/scaleout-$n.json"
echo "summary: $out/scaleout-$n.json"
