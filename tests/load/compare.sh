#!/usr/bin/env bash
# tests/load/compare.sh — the same load scenarios against wshub and against
# the lecture's Node.js ws@8 chat (tests/load/node-chat), side by side.
#
# The server runs pinned to core 0 (taskset -c 0), the load client wsload to
# core 1; each server is started fresh for each scenario on a free loopback
# port and stopped by PID afterwards. Nothing is built here: WSHUB_BIN and
# WSLOAD_BIN name the binaries (defaults build/wshub and build/wsload).
#
# Scenarios (SCENARIOS, space-separated; default the first four):
#   fanout      1000 connections, 10 senders, 1000 msgs/s in total: p99 latency
#   saturation  100 connections, all sending, window 4, as fast as it goes
#   handshake   10000 fresh connections, upgrades/s
#   memory      10000 idle connections held HOLD_S seconds: server VmRSS
#               growth per connection (KiB)
#   broadcast   19000 connections, one sender, 1 msg/s: does it reach all?
#
# Environment: WSHUB_BIN, WSLOAD_BIN, SERVERS ("wshub node"), SCENARIOS,
# DURATION (seconds of sending, default 10), HOLD_S (10), SOURCE_IPS (8),
# SERVER_CPU (0), CLIENT_CPU (1), RESULTS_DIR (default: a new temp dir).
# Every run is capped (timeout); the script ends by itself. Starting,
# pinning and stopping servers: tests/load/lib.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
WSHUB_BIN=${WSHUB_BIN:-$root/build/wshub}
WSLOAD_BIN=${WSLOAD_BIN:-$root/build/wsload}
SERVERS=${SERVERS:-wshub node}
SCENARIOS=${SCENARIOS:-fanout saturation handshake memory}
DURATION=${DURATION:-10}
HOLD_S=${HOLD_S:-10}
SOURCE_IPS=${SOURCE_IPS:-8}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/wshub-compare.XXXXXX)}
mkdir -p "$RESULTS_DIR"

LIB_NAME=compare.sh
# shellcheck source=lib.sh
. "$here/lib.sh"
[[ -x $WSHUB_BIN ]] || die "no wshub at $WSHUB_BIN (build it, or set WSHUB_BIN)"
[[ -x $WSLOAD_BIN ]] || die "no wsload at $WSLOAD_BIN (build it, or set WSLOAD_BIN)"
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
command -v node >/dev/null || die "node is needed for the Node chat"
[[ $DURATION =~ ^[0-9]+$ && $HOLD_S =~ ^[0-9]+$ ]] || die "DURATION and HOLD_S are whole seconds"

raise_nofile
echo "compare.sh: open files limit $(ulimit -n); results in $RESULTS_DIR" >&2

if [[ " $SERVERS " == *" node "* ]]; then
  node_chat_ready "$here/node-chat"
fi

lib_traps

# start_server NAME LOGFILE: starts it pinned, sets server_pid and port.
start_server() {
  local name=$1 log=$2
  case $name in
    wshub)
      start_pinned "$name" "$log" "$WSHUB_BIN" --host 127.0.0.1 --port 0 \
        --threads 1 --msg-rate 0 --max-per-ip 0 --log-level warn
      ;;
    node)
      start_pinned "$name" "$log" env HOST=127.0.0.1 PORT=0 node "$here/node-chat/server.js"
      ;;
    *) die "unknown server $name" ;;
  esac
}

rss_kib() { local v; v=$(status_kib "$1" VmRSS); echo "${v:-0}"; }

# run_client CAP OUT ARGS...: wsload pinned to the client core, capped.
run_client() {
  local cap=$1 out=$2; shift 2
  timeout --signal=TERM --kill-after=5 "$cap" \
    taskset -c "$CLIENT_CPU" "$WSLOAD_BIN" --url "ws://127.0.0.1:$port/" \
    --source-ips "$SOURCE_IPS" "$@" >"$out" 2>"${out%.out}.err" &
  client_pid=$!
  wait "$client_pid" || true
  client_pid=
}

declare -A R   # R[server.scenario.key] = value

# record SERVER SCENARIO FILE: keeps the RESULT line's keys.
record() {
  local line kv
  line=$(grep -m1 '^RESULT ' "$3" || true)
  if [[ -z $line ]]; then
    echo "compare.sh: $1 $2: no RESULT line (see ${3%.out}.err)" >&2
    return 0
  fi
  echo "$1 $2 $line" >>"$RESULTS_DIR/results.txt"
  for kv in ${line#RESULT }; do
    R[$1.$2.${kv%%=*}]=${kv#*=}
  done
}

scenario() {
  local srv=$1 sc=$2 base="$RESULTS_DIR/$1-$2"
  echo "compare.sh: $srv: $sc" >&2
  start_server "$srv" "$base.server.log"
  case $sc in
    fanout)
      run_client $((DURATION + 90)) "$base.out" --connections 1000 --senders 10 \
        --rate 1000 --window 0 --warmup 2 --duration "$DURATION" --quiet
      ;;
    saturation)
      run_client $((DURATION + 60)) "$base.out" --connections 100 --senders 100 \
        --rate 0 --window 4 --warmup 2 --duration "$DURATION" --quiet
      ;;
    handshake)
      run_client 180 "$base.out" --connections 10000 --handshake-only \
        --concurrency 256 --quiet
      ;;
    broadcast)
      run_client $((DURATION + 180)) "$base.out" --connections 19000 --senders 1 \
        --rate 1 --duration "$DURATION" --concurrency 512 --drain 10 --quiet
      ;;
    memory)
      local before after n
      sleep 1
      before=$(rss_kib "$server_pid")
      timeout --signal=TERM --kill-after=5 $((HOLD_S + 180)) \
        taskset -c "$CLIENT_CPU" "$WSLOAD_BIN" --url "ws://127.0.0.1:$port/" \
        --source-ips "$SOURCE_IPS" --connections 10000 --hold "$HOLD_S" \
        --concurrency 512 --quiet >"$base.out" 2>"$base.err" &
      client_pid=$!
      for _ in $(seq 1800); do
        grep -q '^connected ' "$base.out" 2>/dev/null && break
        kill -0 "$client_pid" 2>/dev/null || break
        sleep 0.1
      done
      sleep 2
      after=$(rss_kib "$server_pid")
      wait "$client_pid" || true
      client_pid=
      n=$(sed -n 's/^connected \([0-9]*\)$/\1/p' "$base.out")
      R[$srv.memory.rss_before_kib]=$before
      R[$srv.memory.rss_held_kib]=$after
      if [[ -n $n && $n -gt 0 ]]; then
        R[$srv.memory.kib_per_conn]=$(awk -v a="$after" -v b="$before" -v n="$n" \
          'BEGIN { printf "%.2f", (a - b) / n }')
      fi
      ;;
    *) die "unknown scenario $sc" ;;
  esac
  record "$srv" "$sc" "$base.out"
  stop_pid "$server_pid"; server_pid=
  sleep 1
}

for srv in $SERVERS; do
  for sc in $SCENARIOS; do
    scenario "$srv" "$sc"
  done
done

# ---- the table ----
# row SCENARIO KEY BETTER(higher|lower)
row() {
  local sc=$1 key=$2 better=$3 a b adv
  a=${R[wshub.$sc.$key]:--}
  b=${R[node.$sc.$key]:--}
  adv=$(awk -v a="$a" -v b="$b" -v h="$better" 'BEGIN {
    if (a == "-" || b == "-" || a + 0 <= 0 || b + 0 <= 0) { print "-"; exit }
    printf "%.2fx", (h == "higher") ? a / b : b / a }')
  printf '%-11s %-18s %14s %14s %12s\n' "$sc" "$key" "$a" "$b" "$adv"
}

echo
printf '%-11s %-18s %14s %14s %12s\n' scenario metric wshub node-ws@8 "wshub adv."
printf '%-11s %-18s %14s %14s %12s\n' -------- ------ ----- --------- ----------
for sc in $SCENARIOS; do
  case $sc in
    fanout|saturation|broadcast)
      row "$sc" msgs_per_s higher
      row "$sc" deliveries_per_s higher
      row "$sc" delivery_ratio higher
      row "$sc" p50_ms lower
      row "$sc" p99_ms lower
      row "$sc" max_ms lower
      row "$sc" connected higher
      row "$sc" errors lower
      ;;
    handshake)
      row "$sc" upgrades higher
      row "$sc" upgrades_per_s higher
      row "$sc" hs_p99_ms lower
      row "$sc" errors lower
      ;;
    memory)
      row "$sc" connected higher
      row "$sc" rss_before_kib lower
      row "$sc" rss_held_kib lower
      row "$sc" kib_per_conn lower
      ;;
  esac
done
echo
echo "wshub adv.: how many times better wshub is (throughput: wshub/node; latency,"
echo "memory: node/wshub). Raw RESULT lines: $RESULTS_DIR/results.txt"
