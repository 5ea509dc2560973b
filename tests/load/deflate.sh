#!/usr/bin/env bash
# tests/load/deflate.sh — what permessage-deflate (RFC 7692) costs and saves
# in wshub's chat: the same loads with compression off (wshub --deflate off,
# wsload without --deflate) and on (wshub's default, wsload --deflate, which
# offers what Chromium offers plus client_no_context_takeover), one table.
#
# For each scenario and mode it starts a fresh wshub (--threads 1 --msg-rate
# 0 --max-per-ip 0 --deflate on|off) on a free loopback port pinned to
# SERVER_CPU, runs wsload pinned to CLIENT_CPU (capped with timeout), reads
# the server's CPU time over the wsload run from /proc/PID/stat, and stops
# the server by PID (tests/load/lib.sh). Scenarios (SCENARIOS, in order):
#
#   fanout      FANOUT_CONNS (1000) clients, 10 senders, 1000 msgs/s in all,
#               no window, WARMUP (2) + DURATION (10) s — bench.sh's fan-out
#   saturation  SAT_CONNS (100) clients all sending, window 4, rate 0,
#               WARMUP + DURATION s — bench.sh's saturation
#   paced       SAT_CONNS clients all sending PACED_RATE (20000) msgs/s in
#               all, no window: the same load with and without compression
#               (saturation with compression is bound by wsload's inflating,
#               so only a paced run compares the server's cost)
#   memory      MEM_CONNS (10000) idle connections from SOURCE_IPS (4)
#               addresses held HOLD_S (10) s: wshub's VmRSS before and at the
#               end of the hold → KiB per idle connection
#
# Messages are wsload's bare marker (about 40 bytes: under the 64-byte
# threshold, so clients send them plain) unless PAYLOAD pads them; wshub
# wraps each in its chat JSON (over 200 bytes), which it compresses once per
# message for all receivers.
#
# Columns: deliveries/s and p50/p99 latency (wsload's, measured part);
# wire and payload bytes per delivery (delivered_wire_bytes /
# delivered_payload_bytes over delivered: the frames as received, and the
# messages after inflating); server CPU µs per delivery (utime + stime of
# wshub over the whole wsload run, warmup and connecting included, over
# every delivery of the run, warmup included: receipts); wsload's CPU
# seconds (near the run's length: the client was the limit); KiB per idle
# connection (memory rows).
#
# Environment: WSHUB_BIN, WSLOAD_BIN (defaults build/wshub, build/wsload),
# MODES ("off on"), SCENARIOS ("fanout saturation paced memory"), DURATION (10),
# WARMUP (2), FANOUT_CONNS (1000), SAT_CONNS (100), PACED_RATE (20000),
# MEM_CONNS (10000),
# HOLD_S (10), SOURCE_IPS (4), PAYLOAD (empty: the bare marker),
# SERVER_CPU (0), CLIENT_CPU (1), RESULTS_DIR (a new /tmp/wshub-deflate.*).
# Quick check (about 40 s):
#   DURATION=2 WARMUP=1 HOLD_S=4 FANOUT_CONNS=100 SAT_CONNS=20 MEM_CONNS=500 \
#     tests/load/deflate.sh
#
# Output: markdown on stdout (also RESULTS_DIR/deflate.md); raw RESULT lines
# in RESULTS_DIR/results.log, each run's output and server log beside them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
WSHUB_BIN=${WSHUB_BIN:-$root/build/wshub}
WSLOAD_BIN=${WSLOAD_BIN:-$root/build/wsload}
MODES=${MODES:-off on}
SCENARIOS=${SCENARIOS:-fanout saturation paced memory}
PACED_RATE=${PACED_RATE:-20000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
FANOUT_CONNS=${FANOUT_CONNS:-1000}
SAT_CONNS=${SAT_CONNS:-100}
MEM_CONNS=${MEM_CONNS:-10000}
HOLD_S=${HOLD_S:-10}
SOURCE_IPS=${SOURCE_IPS:-4}
PAYLOAD=${PAYLOAD:-}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
LIB_NAME=deflate.sh
# shellcheck source=lib.sh
. "$here/lib.sh"
lib_results deflate
require_whole DURATION WARMUP FANOUT_CONNS SAT_CONNS MEM_CONNS HOLD_S SOURCE_IPS PACED_RATE
[[ -z $PAYLOAD || $PAYLOAD =~ ^[0-9]+$ ]] || die "PAYLOAD must be a whole number"
(( HOLD_S >= 4 )) || die "HOLD_S must be at least 4"
(( FANOUT_CONNS >= 10 )) || die "FANOUT_CONNS must be at least 10 (10 senders)"
for m in $MODES; do [[ $m == on || $m == off ]] || die "MODES: on and/or off"; done
[[ -x $WSHUB_BIN ]] || die "no wshub at $WSHUB_BIN (ninja -C build, or set WSHUB_BIN)"
[[ -x $WSLOAD_BIN ]] || die "no wsload at $WSLOAD_BIN (ninja -C build, or set WSLOAD_BIN)"
"$WSHUB_BIN" --help 2>&1 | grep -q -- '--deflate' || die "$WSHUB_BIN has no --deflate"
"$WSLOAD_BIN" --help 2>&1 | grep -q -- '--deflate' || die "$WSLOAD_BIN has no --deflate"
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
raise_nofile
echo "deflate.sh: open files limit $(ulimit -n); results in $RESULTS_DIR" >&2
lib_traps
HZ=$(getconf CLK_TCK)

declare -A R   # R[scenario.mode.key] = value
NOTES=()
CMDS=()
t_start=$SECONDS

run() {
  local sc=$1 mode=$2 base="$RESULTS_DIR/$1-$2"
  echo "deflate.sh: $sc, deflate $mode ($((SECONDS - t_start)) s)" >&2
  start_pinned wshub "$base.server.log" "$WSHUB_BIN" --host 127.0.0.1 --port 0 --threads 1 \
    --log-level warn --msg-rate 0 --max-per-ip 0 --deflate "$mode"
  local -a load pmd=() pad=()
  [[ $mode == on ]] && pmd=(--deflate)
  [[ -n $PAYLOAD ]] && pad=(--payload "$PAYLOAD")
  case $sc in
    fanout) load=($((DURATION + WARMUP + 90)) --connections "$FANOUT_CONNS" --senders 10
      --rate 1000 --window 0 --warmup "$WARMUP" --duration "$DURATION" --drain 5 "${pad[@]}") ;;
    saturation) load=($((DURATION + WARMUP + 60)) --connections "$SAT_CONNS" --senders "$SAT_CONNS"
      --rate 0 --window 4 --warmup "$WARMUP" --duration "$DURATION" --drain 5 "${pad[@]}") ;;
    paced) load=($((DURATION + WARMUP + 60)) --connections "$SAT_CONNS" --senders "$SAT_CONNS"
      --rate "$PACED_RATE" --window 0 --warmup "$WARMUP" --duration "$DURATION" --drain 5 "${pad[@]}") ;;
    memory) load=($((HOLD_S + 180)) --connections "$MEM_CONNS" --hold "$HOLD_S" --concurrency 512) ;;
    *) die "unknown scenario $sc" ;;
  esac
  local -a cmd=(timeout --signal=TERM --kill-after=5 "${load[0]}" taskset -c "$CLIENT_CPU"
    "$WSLOAD_BIN" --url "ws://127.0.0.1:$port/" --source-ips "$SOURCE_IPS" "${load[@]:1}"
    "${pmd[@]}" --quiet)
  local shown="${cmd[*]}"
  CMDS+=("# $sc, deflate $mode"$'\n'"$server_cmd"$'\n'"${shown//127.0.0.1:$port\//127.0.0.1:PORT/}")
  local c0 c1 k0 k1 before="" late=""
  sleep 1
  before=$(status_kib "$server_pid" VmRSS)
  c0=$(proc_cpu_ticks "$server_pid"); children_mark "$RESULTS_DIR"; k0=$KIDS
  "${cmd[@]}" >"$base.out" 2>"$base.err" &
  client_pid=$!
  if [[ $sc == memory ]]; then
    local t0
    for _ in $(seq 1800); do
      grep -q '^connected ' "$base.out" 2>/dev/null && break
      kill -0 "$client_pid" 2>/dev/null || break
      sleep 0.1
    done
    t0=$SECONDS
    sleep $((HOLD_S - 2 - (SECONDS - t0) > 0 ? HOLD_S - 2 - (SECONDS - t0) : 0))
    late=$(status_kib "$server_pid" VmRSS)
  fi
  wait "$client_pid" || true
  client_pid=
  c1=$(proc_cpu_ticks "$server_pid"); children_mark "$RESULTS_DIR"; k1=$KIDS
  if ! kill -0 "$server_pid" 2>/dev/null; then
    NOTES+=("$sc $mode: the server exited during the run; log: $base.server.log")
  fi
  stop_pid "$server_pid"; server_pid=
  local usual='listening on|open-file limit|SIGTERM received|^wshub: stopped$'
  if grep -Evq "$usual" "$base.server.log" 2>/dev/null; then
    NOTES+=("$sc $mode: server log lines besides start and stop: $(grep -Ev "$usual" "$base.server.log" | head -n 3 | tr '\n' ' ' | cut -c1-300)")
  fi
  keep_result "$sc.$mode" "$base.out" || return 0
  R[$sc.$mode.server_cpu_s]=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')
  R[$sc.$mode.client_cpu_s]=$(awk -v a="$k0" -v b="$k1" 'BEGIN { printf "%.2f", b - a }')
  if [[ $sc == memory ]]; then
    local n=${R[$sc.$mode.connected]:-0}
    R[$sc.$mode.rss_before_kib]=$before
    R[$sc.$mode.rss_late_kib]=$late
    if [[ -n $before && -n $late && $n -gt 0 ]]; then
      R[$sc.$mode.kib_per_conn]=$(awk -v a="$late" -v b="$before" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / n }')
    fi
    echo "$sc $mode rss_before_kib=$before rss_end_kib=$late" >>"$LOG"
  fi
  echo "$sc $mode server_cpu_s=${R[$sc.$mode.server_cpu_s]} client_cpu_s=${R[$sc.$mode.client_cpu_s]}" >>"$LOG"
  local e=${R[$sc.$mode.errors]:-0}
  if [[ $e != 0 ]]; then
    NOTES+=("$sc $mode: wsload errors=$e (connect ${R[$sc.$mode.connect_errors]}, handshake ${R[$sc.$mode.handshake_errors]}, protocol ${R[$sc.$mode.protocol_errors]}, closed ${R[$sc.$mode.closed]})")
  fi
  if [[ $mode == on && ${R[$sc.$mode.deflate_conns]:-0} != "${R[$sc.$mode.connected]:-0}" ]]; then
    NOTES+=("$sc on: only ${R[$sc.$mode.deflate_conns]:-0} of ${R[$sc.$mode.connected]:-0} connections negotiated deflate")
  fi
  sleep 1
}

for sc in $SCENARIOS; do
  for mode in $MODES; do
    run "$sc" "$mode"
  done
done
runtime=$((SECONDS - t_start))

# ---- the table ----
v() { echo "${R[$1.$2.$3]:-}"; }
# div A B [SCALE] [FMT]: A * SCALE / B, or – when missing or B is 0.
div() { awk -v a="${1:-}" -v b="${2:-}" -v k="${3:-1}" -v f="${4:-%.0f}" \
  'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "–"; else printf f, a * k / b }'; }
or_dash() { echo "${1:-–}"; }

{
  echo "## permessage-deflate in wshub's chat ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Host: $(uname -srm), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) CPUs;" \
    "$("$WSHUB_BIN" --version 2>&1 | head -n1) (git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))."
  echo "wshub pinned to CPU $SERVER_CPU (\`--threads 1 --msg-rate 0 --max-per-ip 0 --deflate off|on\`), wsload to CPU $CLIENT_CPU; a fresh wshub per run; whole run $runtime s."
  echo "Fan-out: $FANOUT_CONNS clients, 10 senders, 1000 msgs/s in all, no window; saturation: $SAT_CONNS clients all sending, window 4; paced: the same clients, $PACED_RATE msgs/s in all; each ${DURATION} s after ${WARMUP} s warmup."
  echo "Memory: $MEM_CONNS idle connections from $SOURCE_IPS addresses held ${HOLD_S} s. Messages: ${PAYLOAD:-the bare marker (about 40 bytes)}${PAYLOAD:+ bytes of text}, which wshub wraps in its chat JSON."
  echo
  echo "| run | deflate | delivered / expected | deliveries/s | p50 ms | p99 ms | wire B / delivery | payload B / delivery | server CPU µs / delivery | wsload CPU s | KiB / idle conn |"
  echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for sc in $SCENARIOS; do
    for mode in $MODES; do
      if [[ -z $(v "$sc" "$mode" mode) ]]; then
        echo "| $sc | $mode | no result | | | | | | | | |"
        continue
      fi
      if [[ $sc == memory ]]; then
        echo "| $sc ($(v "$sc" "$mode" connected) conns) | $mode | – | – | – | – | – | – | – | $(v "$sc" "$mode" client_cpu_s) | $(or_dash "$(v "$sc" "$mode" kib_per_conn)") |"
        continue
      fi
      local_d=$(v "$sc" "$mode" delivered)
      echo "| $sc | $mode | $local_d / $(v "$sc" "$mode" expected) ($(v "$sc" "$mode" delivery_ratio))" \
        "| $(div "$(v "$sc" "$mode" deliveries_per_s)" 1) | $(v "$sc" "$mode" p50_ms) | $(v "$sc" "$mode" p99_ms)" \
        "| $(div "$(v "$sc" "$mode" delivered_wire_bytes)" "$local_d" 1 %.1f)" \
        "| $(div "$(v "$sc" "$mode" delivered_payload_bytes)" "$local_d" 1 %.1f)" \
        "| $(div "$(v "$sc" "$mode" server_cpu_s)" "$(v "$sc" "$mode" receipts)" 1000000 %.2f)" \
        "| $(v "$sc" "$mode" client_cpu_s) | – |"
    done
  done
  echo
  echo "Wire B / delivery: the frames of the measured deliveries as received (header + payload, compressed when RSV1) over delivered; payload B / delivery: the same messages after inflating."
  echo "Server CPU: wshub's utime + stime over the whole wsload run (connecting, warmup, measuring, drain) over every delivery in it (warmup included)."
  echo "KiB / idle conn: (VmRSS at the end of the hold − VmRSS before connecting) / connections."
  for sc in $SCENARIOS; do
    [[ $sc == memory ]] && continue
    for mode in $MODES; do
      [[ -n $(v "$sc" "$mode" mode) ]] || continue
      echo "- $sc $mode: wsload sent $(v "$sc" "$mode" msgs_out_compressed) messages compressed and $(v "$sc" "$mode" msgs_out_plain) plain; received $(v "$sc" "$mode" msgs_in_compressed) compressed and $(v "$sc" "$mode" msgs_in_plain) plain (welcomes and warmup included); server CPU $(v "$sc" "$mode" server_cpu_s) s; $(v "$sc" "$mode" deflate_conns) of $(v "$sc" "$mode" connected) connections negotiated deflate"
    done
  done
  print_tail "ulimit -n $(ulimit -n)"
} | tee "$RESULTS_DIR/deflate.md"
echo "deflate.sh: results in $RESULTS_DIR" >&2
