#!/usr/bin/env bash
# tests/load/bench.sh — the performance targets measured in one run, side by
# side: wshub (chat mode, --threads 1), wshub --echo (where it makes sense),
# the bare batched epoll relay (tests/load/relay.c, the baseline) and the
# lecture's Node.js ws@8 chat (tests/load/node-chat).
#
# Every server is started fresh for every scenario on a free loopback port,
# pinned to SERVER_CPU (taskset), and stopped by PID afterwards; wsload runs
# pinned to CLIENT_CPU. Every run is capped with timeout(1).
#
# Scenarios (SCENARIOS, space-separated, default all, in this order):
#   fanout       FANOUT_CONNS (1000) clients, 10 senders, 1000 msgs/s in all,
#                no window: p50/p99/max latency, delivery ratio
#                (wshub, relay, node)
#   saturation   SAT_CONNS (100) clients all sending, window 4, rate 0:
#                deliveries/s (wshub, relay, node)
#   handshake    HS_CONNS (10000) fresh connections, --handshake-only:
#                upgrades/s (wshub, wshub-echo, relay, node)
#   memory       MEM_CONNS (10000) idle connections held HOLD_S seconds:
#                server VmRSS before connecting and while held, KiB per
#                connection 1 s after all are up and at the end of the hold
#                (wshub, wshub-echo, relay, node)
#   connections  BIG_CONNS (19000) connections from SOURCE_IPS addresses, one
#                broadcast message that must reach all of them (wshub, relay)
#
# Environment: WSHUB_BIN, WSLOAD_BIN, RELAY_BIN (defaults build/wshub,
# build/wsload, build/relay; relay.c is compiled with cc into RESULTS_DIR if
# RELAY_BIN does not exist), SERVERS ("wshub wshub-echo relay node"),
# SCENARIOS, DURATION (10), WARMUP (2), FANOUT_CONNS, SAT_CONNS, HS_CONNS,
# MEM_CONNS, BIG_CONNS, HOLD_S (10), SOURCE_IPS (4), SERVER_CPU (0),
# CLIENT_CPU (1), RESULTS_DIR (default: a new /tmp/wshub-bench.XXXXXX).
# Quick smoke run:
#   DURATION=3 WARMUP=1 HOLD_S=4 FANOUT_CONNS=200 HS_CONNS=2000 \
#     MEM_CONNS=2000 BIG_CONNS=3000 tests/load/bench.sh
#
# Output: markdown on stdout (also RESULTS_DIR/bench.md); the raw RESULT
# lines in RESULTS_DIR/results.log; each run's output and server log beside.
# Starting, pinning and stopping servers: tests/load/lib.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
WSHUB_BIN=${WSHUB_BIN:-$root/build/wshub}
WSLOAD_BIN=${WSLOAD_BIN:-$root/build/wsload}
RELAY_BIN=${RELAY_BIN:-$root/build/relay}
SERVERS=${SERVERS:-wshub wshub-echo relay node}
SCENARIOS=${SCENARIOS:-fanout saturation handshake memory connections}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
FANOUT_CONNS=${FANOUT_CONNS:-1000}
SAT_CONNS=${SAT_CONNS:-100}
HS_CONNS=${HS_CONNS:-10000}
MEM_CONNS=${MEM_CONNS:-10000}
BIG_CONNS=${BIG_CONNS:-19000}
HOLD_S=${HOLD_S:-10}
SOURCE_IPS=${SOURCE_IPS:-4}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
LIB_NAME=bench.sh
# shellcheck source=lib.sh
. "$here/lib.sh"
lib_results bench
require_whole DURATION WARMUP FANOUT_CONNS SAT_CONNS HS_CONNS MEM_CONNS BIG_CONNS HOLD_S SOURCE_IPS
(( HOLD_S >= 4 )) || die "HOLD_S must be at least 4"
[[ -x $WSHUB_BIN ]] || die "no wshub at $WSHUB_BIN (ninja -C build, or set WSHUB_BIN)"
[[ -x $WSLOAD_BIN ]] || die "no wsload at $WSLOAD_BIN (ninja -C build, or set WSLOAD_BIN)"
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
if [[ ! -x $RELAY_BIN ]]; then
  RELAY_BIN=$RESULTS_DIR/relay
  echo "bench.sh: compiling tests/load/relay.c into $RELAY_BIN" >&2
  cc -std=c11 -O2 -Wall -Wextra -Werror -o "$RELAY_BIN" "$here/relay.c" -lcrypto
fi
if [[ " $SERVERS " == *" node "* ]]; then
  command -v node >/dev/null || die "node is needed for the Node chat (or drop it from SERVERS)"
  node_chat_ready "$here/node-chat"
fi

raise_nofile
echo "bench.sh: open files limit $(ulimit -n); results in $RESULTS_DIR" >&2
lib_traps

declare -A R        # R[server.scenario.key] = value
note_cmd() { [[ -n ${SEEN[$1]:-} ]] || { SEEN[$1]=1; CMDS+=("$1"); }; }
declare -A SEEN     # commands already in CMDS
CMDS=()            # the exact commands, in order (PORT: the server's port)
NOTES=()           # anything odd: early exits, server log lines, errors
t_start=$SECONDS

# start_server NAME LOG: starts it pinned; sets server_pid, port, server_cmd.
start_server() {
  local name=$1 log=$2
  local -a cmd
  case $name in
    # The load is the point here: no per-client message rate or per-address
    # connection limits (all clients come from a few loopback addresses).
    wshub) cmd=("$WSHUB_BIN" --host 127.0.0.1 --port 0 --threads 1 --log-level warn --msg-rate 0 --max-per-ip 0) ;;
    wshub-echo) cmd=("$WSHUB_BIN" --host 127.0.0.1 --port 0 --threads 1 --log-level warn --echo --max-per-ip 0) ;;
    relay) cmd=("$RELAY_BIN" --host 127.0.0.1 --port 0) ;;
    node) cmd=(env HOST=127.0.0.1 PORT=0 node "$here/node-chat/server.js") ;;
    *) die "unknown server $name" ;;
  esac
  start_pinned "$name" "$log" "${cmd[@]}"
}

# cpu_mark: sets MARK to "busy_s steal_s children_s": user+nice+system+irq+
# softirq of all CPUs and steal, from /proc/stat, and the CPU time of this
# shell's waited children (the servers and wsload; `times` runs in this shell,
# not in a subshell, whose children would be its own). The difference of two
# marks tells how much CPU other processes took during a run, and how much
# the hypervisor stole.
cpu_mark() {
  local busy steal
  read -r busy steal < <(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat)
  children_mark "$RESULTS_DIR"
  MARK=$(awk -v b="$busy" -v st="$steal" -v k="$KIDS" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.2f %.2f %.2f", b / hz, st / hz, k }')
}
# cpu_note SERVER SCENARIO MARK-BEFORE: notes foreign CPU use or steal.
cpu_note() {
  local other steal
  cpu_mark
  read -r other steal < <(awk -v a="$3" -v b="$MARK" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    printf "%.1f %.1f\n", (y[1] - x[1]) - (y[3] - x[3]), y[2] - x[2] }')
  R[$1.$2.other_cpu_s]=$other
  echo "$1 $2 other_cpu_s=$other steal_s=$steal" >>"$LOG"
  if awk -v o="$other" -v s="$steal" 'BEGIN { exit !(o > 1.0 || s > 1.0) }'; then
    NOTES+=("$1 $2: other processes used about $other s of CPU and the hypervisor stole $steal s during this run: its numbers may be disturbed")
  fi
}

# wsload_args CAP ARGS...: sets client_args, the capped, pinned wsload command.
wsload_args() {
  client_args=(timeout --signal=TERM --kill-after=5 "$1" taskset -c "$CLIENT_CPU"
    "$WSLOAD_BIN" --url "ws://127.0.0.1:$port/" --source-ips "$SOURCE_IPS" "${@:2}" --quiet)
}

# record SERVER SCENARIO OUTFILE: keeps the RESULT line's keys.
record() {
  keep_result "$1.$2" "$3" || return 0
  R[$1.$2.bytes_per_frame]=$(awk -v b="${R[$1.$2.bytes_in]:-0}" -v f="${R[$1.$2.frames_in]:-0}" \
    'BEGIN { if (f > 0) printf "%.0f", b / f; else print "-" }')
  if [[ ${R[$1.$2.errors]:-0} != 0 ]]; then
    NOTES+=("$1 $2: wsload errors=${R[$1.$2.errors]} (connect ${R[$1.$2.connect_errors]}, handshake ${R[$1.$2.handshake_errors]}, protocol ${R[$1.$2.protocol_errors]}, closed by server ${R[$1.$2.closed]})")
  fi
}

scenario() {
  local srv=$1 sc=$2 base="$RESULTS_DIR/$1-$2" hwm
  echo "bench.sh: $srv: $sc ($((SECONDS - t_start)) s)" >&2
  local mark
  cpu_mark
  mark=$MARK
  start_server "$srv" "$base.server.log"
  case $sc in
    fanout)
      wsload_args $((DURATION + WARMUP + 90)) --connections "$FANOUT_CONNS" --senders 10 \
        --rate 1000 --window 0 --warmup "$WARMUP" --duration "$DURATION" --drain 5 ;;
    saturation)
      wsload_args $((DURATION + WARMUP + 60)) --connections "$SAT_CONNS" --senders "$SAT_CONNS" \
        --rate 0 --window 4 --warmup "$WARMUP" --duration "$DURATION" --drain 5 ;;
    handshake)
      wsload_args 180 --connections "$HS_CONNS" --handshake-only --concurrency 256 ;;
    memory)
      wsload_args $((HOLD_S + 180)) --connections "$MEM_CONNS" --hold "$HOLD_S" --concurrency 512 ;;
    connections)
      wsload_args 240 --connections "$BIG_CONNS" --senders 1 --rate 1 --messages 1 \
        --duration 2 --drain 20 --concurrency 512 ;;
    *) die "unknown scenario $sc" ;;
  esac
  note_cmd "# server $srv"$'\n'"$server_cmd"
  note_cmd "# scenario $sc"$'\n'"$(echo "${client_args[*]}" | sed "s|127.0.0.1:$port/|127.0.0.1:PORT/|")"
  if [[ $sc == memory ]]; then
    local before early late n t0
    sleep 1
    before=$(status_kib "$server_pid" VmRSS)
    "${client_args[@]}" >"$base.out" 2>"$base.err" &
    client_pid=$!
    for _ in $(seq 1800); do
      grep -q '^connected ' "$base.out" 2>/dev/null && break
      kill -0 "$client_pid" 2>/dev/null || break
      sleep 0.1
    done
    t0=$SECONDS
    sleep 1
    early=$(status_kib "$server_pid" VmRSS)
    sleep $((HOLD_S - 2 - (SECONDS - t0) > 0 ? HOLD_S - 2 - (SECONDS - t0) : 0))
    late=$(status_kib "$server_pid" VmRSS)
    wait "$client_pid" || true
    client_pid=
    n=$(sed -n 's/^connected \([0-9]*\)$/\1/p' "$base.out")
    R[$srv.memory.rss_before_kib]=$before
    R[$srv.memory.rss_early_kib]=$early
    R[$srv.memory.rss_late_kib]=$late
    if [[ -n $n && $n -gt 0 && -n $before && -n $late ]]; then
      R[$srv.memory.kib_early]=$(awk -v a="$early" -v b="$before" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / n }')
      R[$srv.memory.kib_late]=$(awk -v a="$late" -v b="$before" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / n }')
    fi
    echo "$srv memory rss_before_kib=$before rss_1s_kib=$early rss_end_kib=$late connected=${n:-0}" >>"$LOG"
  else
    "${client_args[@]}" >"$base.out" 2>"$base.err" &
    client_pid=$!
    wait "$client_pid" || true
    client_pid=
  fi
  record "$srv" "$sc" "$base.out"
  hwm=$(status_kib "$server_pid" VmHWM)
  [[ -n $hwm ]] && R[$srv.$sc.hwm_mib]=$(awk -v h="$hwm" 'BEGIN { printf "%.1f", h / 1024 }')
  if ! kill -0 "$server_pid" 2>/dev/null; then
    wait "$server_pid" 2>/dev/null && rc=0 || rc=$?
    NOTES+=("$srv $sc: the server exited during the run (status $rc); log: $base.server.log")
  fi
  stop_pid "$server_pid"; server_pid=
  cpu_note "$srv" "$sc" "$mark"
  if [[ -s $base.server.log ]]; then
    local lines
    local usual='listening on|open-file limit|SIGTERM received|^wshub: stopped$'
    lines=$(grep -Evc "$usual" "$base.server.log" || true)
    if (( lines > 0 )); then
      NOTES+=("$srv $sc: $lines server log line(s) besides start/stop, first: $(grep -Ev "$usual" "$base.server.log" | head -n1 | cut -c1-200)")
    fi
  fi
  sleep 1
}

# Which servers take part in which scenario.
servers_for() {
  local want s out=()
  case $1 in
    fanout|saturation) want="wshub relay node" ;;
    handshake|memory) want="wshub wshub-echo relay node" ;;
    connections) want="wshub relay" ;;
  esac
  for s in $SERVERS; do [[ " $want " == *" $s "* ]] && out+=("$s"); done
  echo "${out[@]}"
}

for sc in $SCENARIOS; do
  for srv in $(servers_for "$sc"); do
    scenario "$srv" "$sc"
  done
done
runtime=$((SECONDS - t_start))

# ---- the report ----
v() { echo "${R[$1.$2.$3]:--}"; }
ratio() {  # ratio A B: A/B to 2 decimals, or - when either is missing or 0
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "-" || b == "-" || a + 0 <= 0 || b + 0 <= 0) { print "-"; exit }
    r = a / b; printf (r >= 0.1 ? "%.2f" : "%.2g"), r }'
}
# table SCENARIO "col:key col:key ...": a row per server, then ratio rows.
table() {
  local sc=$1 cols=$2 c srv row a b ref num
  local -a servers
  read -r -a servers <<<"$(servers_for "$sc")"
  (( ${#servers[@]} )) || return 0
  row="| server |"; for c in $cols; do row+=" ${c%%:*} |"; done; echo "${row//_/ }"
  row="| --- |"; for c in $cols; do row+=" ---: |"; done; echo "$row"
  for srv in "${servers[@]}"; do
    row="| $srv |"
    for c in $cols; do row+=" $(v "$srv" "$sc" "${c#*:}") |"; done
    echo "$row"
  done
  for num in wshub wshub-echo; do
    for ref in relay node; do
      [[ " ${servers[*]} " == *" $num "* && " ${servers[*]} " == *" $ref "* ]] || continue
      row="| *$num / $ref* |"
      for c in $cols; do
        a=$(v "$num" "$sc" "${c#*:}"); b=$(v "$ref" "$sc" "${c#*:}")
        case ${c#*:} in
          connected|upgrades|sent|expected|delivered|errors) row+=" |" ;;
          *) row+=" $(ratio "$a" "$b") |" ;;
        esac
      done
      echo "$row"
    done
  done
  echo
}
# verdict TEXT CONDITION-AWK-EXPR VALUES...: "met" / "NOT met" / "not measured".
verdict() {
  local text=$1 expr=$2; shift 2
  local x res
  for x in "$@"; do [[ $x == - || -z $x ]] && { echo "- $text: not measured"; return; }; done
  res=$(awk -v a="${1:-}" -v b="${2:-}" -v c="${3:-}" "BEGIN { print ($expr) ? \"met\" : \"NOT met\" }")
  echo "- $text: **$res**"
}

report() {
  local cpu
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  echo "## wshub benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "- host: \`$(uname -a)\`"
  echo "- CPU: $cpu; nproc $(nproc); open files limit $(ulimit -n)"
  echo "- wshub $("$WSHUB_BIN" --version 2>&1 | head -n1) (git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')), node $(node --version 2>/dev/null || echo -)"
  echo "- servers pinned with \`taskset -c $SERVER_CPU\`, wsload with \`taskset -c $CLIENT_CPU\`; wshub runs \`--threads 1 --msg-rate 0 --max-per-ip 0\`; each server started fresh per scenario"
  echo "- DURATION=$DURATION s, WARMUP=$WARMUP s, HOLD_S=$HOLD_S s, SOURCE_IPS=$SOURCE_IPS; whole run $runtime s"
  echo "- ratios are plain quotients (wshub / other): above 1 is better for rates, below 1 is better for latency and memory; bytes/frame is bytes_in / frames_in as wsload received them (wshub and node wrap each message in chat JSON, the relay sends it bare)"
  echo
  if [[ " $SCENARIOS " == *" fanout "* ]]; then
    echo "### Fan-out: $FANOUT_CONNS clients, 10 senders, 1000 msgs/s in all, ${DURATION} s (+${WARMUP} s warmup)"
    echo
    table fanout "connected:connected sent:sent delivered:delivered ratio:delivery_ratio deliveries/s:deliveries_per_s p50_ms:p50_ms p99_ms:p99_ms max_ms:max_ms errors:errors bytes/frame:bytes_per_frame peak_RSS_MiB:hwm_mib"
    verdict "target (wshub): every message delivered and p99 < 100 ms" 'a == b && b > 0 && c < 100' \
      "$(v wshub fanout delivered)" "$(v wshub fanout expected)" "$(v wshub fanout p99_ms)"
    echo
  fi
  if [[ " $SCENARIOS " == *" saturation "* ]]; then
    echo "### Saturation: $SAT_CONNS clients all sending, window 4, ${DURATION} s (+${WARMUP} s warmup)"
    echo
    table saturation "msgs/s:msgs_per_s deliveries/s:deliveries_per_s ratio:delivery_ratio p50_ms:p50_ms p99_ms:p99_ms max_ms:max_ms errors:errors bytes/frame:bytes_per_frame peak_RSS_MiB:hwm_mib"
    verdict "target (wshub): deliveries/s at least 80 % of the relay's" 'a >= 0.8 * b' \
      "$(v wshub saturation deliveries_per_s)" "$(v relay saturation deliveries_per_s)"
    echo
  fi
  if [[ " $SCENARIOS " == *" handshake "* ]]; then
    echo "### Handshakes: $HS_CONNS fresh connections, --handshake-only"
    echo
    table handshake "upgrades:upgrades upgrades/s:upgrades_per_s hs_p50_ms:hs_p50_ms hs_p99_ms:hs_p99_ms hs_max_ms:hs_max_ms errors:errors"
    verdict "target (wshub chat): at least 13000 upgrades/s" 'a >= 13000' "$(v wshub handshake upgrades_per_s)"
    verdict "target (wshub --echo): at least 13000 upgrades/s" 'a >= 13000' "$(v wshub-echo handshake upgrades_per_s)"
    echo
  fi
  if [[ " $SCENARIOS " == *" memory "* ]]; then
    echo "### Idle memory: $MEM_CONNS connections held ${HOLD_S} s (VmRSS)"
    echo
    table memory "connected:connected RSS_before_KiB:rss_before_kib RSS_1s_KiB:rss_early_kib RSS_end_KiB:rss_late_kib KiB/conn_1s:kib_early KiB/conn_end:kib_late"
    verdict "target (wshub chat): at most 2 KiB per idle connection" 'a <= 2' "$(v wshub memory kib_late)"
    verdict "target (wshub --echo): at most 2 KiB per idle connection" 'a <= 2' "$(v wshub-echo memory kib_late)"
    echo
  fi
  if [[ " $SCENARIOS " == *" connections "* ]]; then
    echo "### Connections: $BIG_CONNS from $SOURCE_IPS addresses, one broadcast"
    echo
    table connections "connected:connected connect_s:connect_s expected:expected delivered:delivered p50_ms:p50_ms max_ms:max_ms errors:errors peak_RSS_MiB:hwm_mib"
    verdict "target (wshub): $BIG_CONNS connections held, the broadcast reaches all" \
      'a == c && b == c' "$(v wshub connections connected)" "$(v wshub connections delivered)" "$BIG_CONNS"
    echo
  fi
  echo "### Notes"
  echo
  if (( ${#NOTES[@]} )); then printf -- '- %s\n' "${NOTES[@]}"; else echo "- nothing odd: no wsload errors, no server log lines, no early exits"; fi
  echo
  echo "### Commands"
  echo
  echo '```'
  echo "ulimit -n $(ulimit -n)"
  printf '%s\n' "${CMDS[@]}"
  echo '```'
  echo
  echo "Raw RESULT lines: $LOG"
}
report | tee "$RESULTS_DIR/bench.md"
