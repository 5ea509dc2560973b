#!/usr/bin/env bash
# tests/load/cluster.sh — one room shared by several wshub nodes through
# Redis, under wsload's fan-out: what sharing costs (docs/PERFORMANCE.md,
# "Several nodes through Redis").
#
# For NODES in NODE_COUNTS (0 = one node without Redis, then 1, 2, 3 nodes
# with it) it starts one redis-server (no persistence) on a free loopback
# port, the nodes (`--threads 1 --msg-rate 0 --max-per-ip 0 --redis ...`)
# on ports of their own, and one wsload whose CONNS connections are spread
# round-robin over the nodes (`--ports`), SENDERS of them sending RATE
# msgs/s in all for DURATION s after WARMUP s; then it stops everything by
# PID. Nothing is pinned: Redis, the nodes and wsload share the machine.
#
# Output: one markdown row per run (delivered, deliveries/s, p50/p99, CPU
# seconds of each node, of Redis and of wsload), also in RESULTS_DIR.
# Environment: WSHUB_BIN, WSLOAD_BIN, NODE_COUNTS ("0 1 2 3"), CONNS
# (1000), SENDERS (10), RATE (1000), DURATION (8), WARMUP (2), RESULTS_DIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
WSHUB_BIN=${WSHUB_BIN:-$root/build/wshub}
WSLOAD_BIN=${WSLOAD_BIN:-$root/build/wsload}
NODE_COUNTS=${NODE_COUNTS:-0 1 2 3}
CONNS=${CONNS:-1000}
SENDERS=${SENDERS:-10}
RATE=${RATE:-1000}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}

LIB_NAME=cluster.sh
# shellcheck source=lib.sh
. "$here/lib.sh"
lib_results cluster
require_whole CONNS SENDERS RATE DURATION WARMUP
command -v redis-server >/dev/null || die "redis-server is needed (tools/dev deps)"
[[ -x $WSHUB_BIN && -x $WSLOAD_BIN ]] || die "build wshub and wsload first (ninja -C build)"
raise_nofile
lib_traps
HZ=$(getconf CLK_TCK)
PIDS=()
stop_all() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  PIDS=()
}
trap 'stop_all; cleanup' EXIT

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
cpu_s() { awk -v hz="$HZ" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

echo "| nodes | delivered / expected | deliveries/s | p50 / p99 ms | CPU per node (s) | Redis CPU (s) | wsload CPU (s) |"
echo "| --- | --- | ---: | --- | --- | ---: | ---: |"
for n in $NODE_COUNTS; do
  rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
    >"$RESULTS_DIR/redis-$n.log" 2>&1 &
  rpid=$!
  PIDS+=("$rpid")
  sleep 0.3
  ports=()
  nodes=()
  count=$((n == 0 ? 1 : n))
  for i in $(seq "$count"); do
    extra=()
    ((n > 0)) && extra=(--redis "redis://127.0.0.1:$rport")
    log="$RESULTS_DIR/node-$n-$i.log"
    "$WSHUB_BIN" --host 127.0.0.1 --port 0 --threads 1 --msg-rate 0 --max-per-ip 0 \
      --log-level warn "${extra[@]}" 2>"$log" &
    pid=$!
    PIDS+=("$pid")
    nodes+=("$pid")
    wait_port "$log" "$pid" || die "node $i did not start (see $log)"
    ports+=("$port")
  done
  plist=$(IFS=,; echo "${ports[*]}")
  out="$RESULTS_DIR/wsload-$n.out"
  /usr/bin/time -f "%U %S" -o "$RESULTS_DIR/wsload-$n.time" \
    timeout --signal=TERM --kill-after=5 $((DURATION + WARMUP + 60)) \
    "$WSLOAD_BIN" --url "ws://127.0.0.1:${ports[0]}/" --ports "$plist" \
    --connections "$CONNS" --senders "$SENDERS" --rate "$RATE" --window 0 \
    --warmup "$WARMUP" --duration "$DURATION" --drain 3 --quiet >"$out" 2>&1 || true
  line=$(grep -m1 '^RESULT ' "$out" || true)
  get() { grep -o " $1=[^ ]*" <<<"$line" | head -n1 | cut -d= -f2; }
  cpus=()
  for p in "${nodes[@]}"; do cpus+=("$(cpu_s "$p")"); done
  label=$((n == 0 ? 1 : n))
  ((n == 0)) && label="1, no Redis"
  wl=$(awk '{ printf "%.2f", $1 + $2 }' "$RESULTS_DIR/wsload-$n.time" 2>/dev/null || echo "?")
  echo "| $label | $(get delivered) / $(get expected) | $(get deliveries_per_s) | $(get p50_ms) / $(get p99_ms) | ${cpus[*]} | $( ((n > 0)) && cpu_s "$rpid" || echo –) | $wl |" |
    tee -a "$RESULTS_DIR/cluster.md"
  stop_all
  sleep 0.5
done
echo "cluster.sh: results in $RESULTS_DIR" >&2
