#!/usr/bin/env bash
# Runs the load scenarios of docs/benchmarks.md: the server pinned to core 0,
# the load on core 1, a fresh server per run. Results: one JSON per run.
#   docs/bench-scenarios.sh [runs] [outdir] [scenario...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
out=${2:-bench-results}
shift 2 || true
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(floor idle-ws idle-tcp room-3 room-20 rooms-100 rest-room rest-mid)
mkdir -p "$out"
bin="$out/imcloud"
go build -o "$bin" .

server=""
start_server() {
  if curl -s -o /dev/null http://127.0.0.1:3111/readyz; then
    echo "something already listens on 127.0.0.1:3111: stop it first" >&2; exit 1
  fi
  taskset -c 0 "$bin" all --config config.yaml --log-level warn >"$out/server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    kill -0 "$server" 2>/dev/null || break
    curl -sf http://127.0.0.1:3111/readyz >/dev/null && return
    sleep 0.1
  done
  echo "server did not start (see $out/server.log)" >&2; exit 1
}
stop_server() {
  [ -n "$server" ] || return 0
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}
trap stop_server EXIT

bench() { taskset -c 1 "$bin" bench --server-pids "$server" --json "$@" 2>/dev/null; }

post_lua=$(mktemp)
printf 'wrk.method = "POST"\nwrk.body = string.rep("x", 100)\nwrk.headers["Content-Type"] = "application/octet-stream"\n' >"$post_lua"

for s in "${scenarios[@]}"; do
  for i in $(seq "$runs"); do
    if [ "$s" = floor ]; then # no server: one plain write per message, the writer on core 0
      for args in "--conns 10000 --rate 3" "--conns 10000 --rate 20" "--conns 2000" "--conns 2000 --batch 4"; do
        taskset -c 0 "$bin" bench floor --reader-cpu 1 --json $args
      done >"$out/$s-$i.json"
      echo "done $s run $i"
      continue
    fi
    start_server
    f="$out/$s-$i.json"
    case "$s" in
      idle-ws)   bench --network ws  --conns 18000 --rooms 1 --push none --duration 30s --heartbeat 30s >"$f" || true ;;
      idle-tcp)  bench --network tcp --conns 18000 --rooms 1 --push none --duration 30s --heartbeat 30s >"$f" || true ;;
      room-3)    bench --network ws  --conns 10000 --rooms 1 --rate 3 --duration 20s >"$f" || true ;;
      room-20)   bench --network ws  --conns 10000 --rooms 1 --rate 20 --duration 20s >"$f" || true ;;
      rooms-100) bench --network ws  --conns 10000 --rooms 100 --rate 300 --duration 20s >"$f" || true ;;
      rest-room) taskset -c 1 wrk -t2 -c16 -d10s --latency -s "$post_lua" \
                   'http://127.0.0.1:3111/goim/push/room?operation=1000&type=live&room=empty' >"$out/$s-$i.txt" ;;
      rest-mid)  taskset -c 1 wrk -t2 -c16 -d10s --latency -s "$post_lua" \
                   'http://127.0.0.1:3111/goim/push/mids?operation=1000&mids=424242' >"$out/$s-$i.txt" ;;
      *) echo "unknown scenario $s" >&2; exit 2 ;;
    esac
    stop_server
    echo "done $s run $i"
  done
done
