#!/usr/bin/env bash
# tests/load/transports.sh — the same chat load over wshub's four transports
# (WebSocket, Server-Sent Events, long polling, polling), side by side.
#
# For each scenario and transport it starts a fresh wshub on a free loopback
# port (--threads 1 --msg-rate 0 --max-per-ip 0, pinned with taskset to
# SERVER_CPU), runs build/wsload --transport T pinned to CLIENT_CPU, reads the
# server's CPU time (/proc/PID/stat, utime + stime, over the wsload run) and
# peak RSS (VmHWM), stops the server by PID, and prints a markdown table per
# scenario on stdout (also RESULTS_DIR/transports.md):
#
#   fanout      CONNS receivers (the sessions), SENDERS of them send RATE
#               msgs/s in all, no window (the rate holds however slow the
#               transport is), WARMUP + DURATION s
#   saturation  CONNS receivers, SAT_SENDERS send as fast as a window of
#               SAT_WINDOW unanswered messages each allows (a message is
#               answered when its sender sees it come back)
#
# Usage: tests/load/transports.sh            (about 2 minutes)
# Environment: WSHUB_BIN, WSLOAD_BIN (defaults build/wshub, build/wsload),
# TRANSPORTS ("ws sse longpoll poll"), SCENARIOS ("fanout saturation"),
# CONNS (200), SENDERS (10), RATE (200), SAT_SENDERS (20), SAT_WINDOW (4),
# DURATION (10), WARMUP (2), POLL_INTERVAL (ms, 1000), POLL_WAIT (s, 25),
# HISTORY (1000: the room's ring; polling at POLL_INTERVAL must not outrun
# it), SERVER_CPU (0), CLIENT_CPU (1), RESULTS_DIR (a new
# /tmp/wshub-transports.XXXXXX). Raw RESULT lines: RESULTS_DIR/results.log.
#
# Ownership: the servers and wsload runs are this script's children; each is
# capped with `timeout` or stopped by PID (SIGTERM, then SIGKILL after 5 s),
# and an EXIT trap stops whatever is still running (tests/load/lib.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
WSHUB_BIN=${WSHUB_BIN:-$root/build/wshub}
WSLOAD_BIN=${WSLOAD_BIN:-$root/build/wsload}
TRANSPORTS=${TRANSPORTS:-ws sse longpoll poll}
SCENARIOS=${SCENARIOS:-fanout saturation}
CONNS=${CONNS:-200}
SENDERS=${SENDERS:-10}
RATE=${RATE:-200}
SAT_SENDERS=${SAT_SENDERS:-20}
SAT_WINDOW=${SAT_WINDOW:-4}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
POLL_INTERVAL=${POLL_INTERVAL:-1000}
POLL_WAIT=${POLL_WAIT:-25}
HISTORY=${HISTORY:-1000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
LIB_NAME=transports.sh
# shellcheck source=lib.sh
. "$here/lib.sh"
lib_results transports
require_whole CONNS SENDERS RATE SAT_SENDERS SAT_WINDOW DURATION WARMUP POLL_INTERVAL POLL_WAIT HISTORY
(( SENDERS <= CONNS && SAT_SENDERS <= CONNS )) || die "more senders than receivers"
[[ -x $WSHUB_BIN ]] || die "no wshub at $WSHUB_BIN (ninja -C build, or set WSHUB_BIN)"
[[ -x $WSLOAD_BIN ]] || die "no wsload at $WSLOAD_BIN (ninja -C build, or set WSLOAD_BIN)"
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
raise_nofile
HZ=$(getconf CLK_TCK)
lib_traps

declare -A R   # R[scenario.transport.key] = value
NOTES=()
CMDS=()

# start_server LOG: a fresh wshub, pinned; sets server_pid, port, server_cmd.
start_server() {
  local log=$1
  start_pinned wshub "$log" "$WSHUB_BIN" --host 127.0.0.1 --port 0 --threads 1 --log-level warn \
    --msg-rate 0 --max-per-ip 0 --history "$HISTORY"
}

# All CPUs' busy ticks (user nice system irq softirq steal) from /proc/stat.
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

label() {
  case $1 in
    poll) echo "poll (${POLL_INTERVAL} ms)" ;;
    longpoll) echo "long poll (wait ${POLL_WAIT} s)" ;;
    sse) echo "SSE + POST" ;;
    ws) echo "WebSocket" ;;
    *) echo "$1" ;;
  esac
}

run() {
  local sc=$1 tr=$2 base="$RESULTS_DIR/$1-$2"
  local -a load
  case $sc in
    fanout) load=(--connections "$CONNS" --senders "$SENDERS" --rate "$RATE" --window 0) ;;
    saturation) load=(--connections "$CONNS" --senders "$SAT_SENDERS" --rate 0 --window "$SAT_WINDOW") ;;
    *) die "unknown scenario $sc" ;;
  esac
  echo "transports.sh: $sc over $tr" >&2
  start_server "$base.server.log"
  local scheme=http
  [[ $tr == ws ]] && scheme=ws
  local -a cmd=(timeout --signal=TERM --kill-after=5 $((WARMUP + DURATION + 90))
    taskset -c "$CLIENT_CPU" "$WSLOAD_BIN" --url "$scheme://127.0.0.1:$port/?room=bench"
    --transport "$tr" "${load[@]}" --format chat-json --warmup "$WARMUP" --duration "$DURATION"
    --drain 5 --poll-interval "$POLL_INTERVAL" --poll-wait "$POLL_WAIT" --quiet)
  local shown="${cmd[*]}"
  CMDS+=("# $sc, $tr"$'\n'"$server_cmd"$'\n'"${shown//127.0.0.1:$port\//127.0.0.1:PORT/}")
  local c0 b0 k0 c1 b1 k1
  c0=$(proc_cpu_ticks "$server_pid"); b0=$(busy_ticks); children_mark "$RESULTS_DIR"; k0=$KIDS
  "${cmd[@]}" >"$base.out" 2>"$base.err" &
  client_pid=$!
  wait "$client_pid" || true
  client_pid=
  c1=$(proc_cpu_ticks "$server_pid"); b1=$(busy_ticks); children_mark "$RESULTS_DIR"; k1=$KIDS
  local hwm
  hwm=$(status_kib "$server_pid" VmHWM)
  if ! kill -0 "$server_pid" 2>/dev/null; then
    NOTES+=("$sc $tr: the server exited during the run; log: $base.server.log")
  fi
  stop_pid "$server_pid"; server_pid=
  if grep -qv -e '^wshub' "$base.server.log" 2>/dev/null; then
    NOTES+=("$sc $tr: server log lines besides start and stop: $(grep -v '^wshub' "$base.server.log" | head -n 3 | tr '\n' ' ')")
  fi
  local line kv
  line=$(grep -m1 '^RESULT ' "$base.out" || true)
  if [[ -z $line ]]; then
    NOTES+=("$sc $tr: no RESULT line (see $base.err)")
    return
  fi
  echo "$sc $tr $line" >>"$LOG"
  for kv in ${line#RESULT }; do
    R[$sc.$tr.${kv%%=*}]=${kv#*=}
  done
  local srv_s cli_s other_s
  srv_s=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')
  cli_s=$(awk -v a="$k0" -v b="$k1" 'BEGIN { printf "%.2f", b - a }')
  other_s=$(awk -v a="$b0" -v b="$b1" -v hz="$HZ" -v s="$srv_s" -v c="$cli_s" \
    'BEGIN { printf "%.1f", (b - a) / hz - s - c }')
  R[$sc.$tr.server_cpu_s]=$srv_s
  R[$sc.$tr.client_cpu_s]=$cli_s
  R[$sc.$tr.hwm_mib]=$(awk -v h="${hwm:-0}" 'BEGIN { printf "%.1f", h / 1024 }')
  echo "$sc $tr server_cpu_s=$srv_s client_cpu_s=$cli_s other_cpu_s=$other_s hwm_kib=${hwm:-}" >>"$LOG"
  if awk -v o="$other_s" 'BEGIN { exit !(o > 1.0) }'; then
    NOTES+=("$sc $tr: other processes (or steal) took about $other_s s of CPU during the run: its numbers may be disturbed")
  fi
  local e=${R[$sc.$tr.errors]:-0} m=${R[$sc.$tr.missed]:-0} d=${R[$sc.$tr.duplicates]:-0}
  if [[ $e != 0 || $m != 0 || $d != 0 ]]; then
    NOTES+=("$sc $tr: errors=$e (connect ${R[$sc.$tr.connect_errors]:-?}, handshake ${R[$sc.$tr.handshake_errors]:-?}, protocol ${R[$sc.$tr.protocol_errors]:-?}, http ${R[$sc.$tr.http_errors]:-?}, closed ${R[$sc.$tr.closed]:-?}), missed=$m, duplicates=$d")
  fi
}

for sc in $SCENARIOS; do
  for tr in $TRANSPORTS; do
    run "$sc" "$tr"
  done
done

# ---- markdown ----
f1() { awk -v v="${1:-}" 'BEGIN { if (v == "") print "–"; else printf "%.1f", v }'; }
f0() { awk -v v="${1:-}" 'BEGIN { if (v == "") print "–"; else printf "%.0f", v }'; }
# per DELIVERED: a / b (or – when b is 0 or missing)
per() { awk -v a="${1:-}" -v b="${2:-}" -v k="${3:-1}" -v fmt="${4:-%.0f}" \
  'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "–"; else printf fmt, a * k / b }'; }

{
  echo "Host: $(uname -srm), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) CPUs;" \
    "$("$WSHUB_BIN" --version 2>/dev/null | head -n1); $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo "wshub pinned to CPU $SERVER_CPU (--threads 1 --msg-rate 0 --max-per-ip 0 --history $HISTORY), wsload to CPU $CLIENT_CPU."
  for sc in $SCENARIOS; do
    echo
    case $sc in
      fanout) echo "**Fan-out**: $CONNS receivers, $SENDERS of them send $RATE msgs/s in all (no window), ${DURATION} s measured after ${WARMUP} s warmup." ;;
      saturation) echo "**Saturation**: $CONNS receivers, $SAT_SENDERS of them send as fast as $SAT_WINDOW unanswered messages each allow, ${DURATION} s after ${WARMUP} s warmup." ;;
    esac
    echo
    echo "| transport | delivered / expected | deliveries/s | p50 ms | p99 ms | max ms | server CPU s | server CPU µs / delivery | server peak RSS MiB | bytes / delivery | requests / delivery | wsload CPU s |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for tr in $TRANSPORTS; do
      k=$sc.$tr
      if [[ -z ${R[$k.delivered]:-} ]]; then
        echo "| $(label "$tr") | no result | | | | | | | | | | |"
        continue
      fi
      wire=$(( ${R[$k.bytes_in]} + ${R[$k.bytes_out]} ))
      echo "| $(label "$tr") | ${R[$k.delivered]} / ${R[$k.expected]} (${R[$k.delivery_ratio]})" \
        "| $(f0 "${R[$k.deliveries_per_s]}") | ${R[$k.p50_ms]} | ${R[$k.p99_ms]} | ${R[$k.max_ms]}" \
        "| ${R[$k.server_cpu_s]} | $(per "${R[$k.server_cpu_s]}" "${R[$k.delivered]}" 1000000 %.2f)" \
        "| ${R[$k.hwm_mib]} | $(per "$wire" "${R[$k.receipts]}")" \
        "| $(per "${R[$k.requests]}" "${R[$k.receipts]}" 1 %.3f) | ${R[$k.client_cpu_s]} |"
    done
  done
  echo
  echo "Server CPU: utime + stime of the wshub process over the wsload run (connect, warmup, measuring, drain);"
  echo "wsload CPU likewise (one thread, on its own core: near the run's length means the client was the limit)."
  echo "Bytes / delivery: every byte wsload sent and received (HTTP heads, frames, polls, POSTs, welcomes)"
  echo "over the run, per message receipt (warmup included); requests / delivery likewise (0 for WebSocket)."
  # shellcheck disable=SC2119  # no extra lines
  print_tail
} | tee "$RESULTS_DIR/transports.md"
echo "transports.sh: results in $RESULTS_DIR" >&2
