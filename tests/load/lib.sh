# shellcheck shell=bash
# shellcheck disable=SC2034  # server_pid, port, server_cmd, KIDS, LOG: for the caller
# tests/load/lib.sh — what the load scripts (bench.sh, compare.sh,
# transports.sh, deflate.sh) share; sourced, never run. Functions only: it
# starts nothing by itself.
#
# Before sourcing, a script sets LIB_NAME (its name, for messages) and
# SERVER_CPU (the core servers are pinned to). It owns two variables the
# functions here use: server_pid (the server it started, started by
# start_pinned) and client_pid (a wsload it runs in the background). Both
# are children of the script's shell: lib_traps installs an EXIT trap that
# stops whichever is still running, by PID (SIGTERM, SIGKILL after 5 s).

server_pid=
client_pid=
port=
server_cmd=

die() { echo "${LIB_NAME:-load}: $*" >&2; exit 2; }

# lib_results NAME: RESULTS_DIR (a new /tmp/wshub-NAME.* unless set) made,
# and LOG, its results.log, emptied.
lib_results() {
  RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d "/tmp/wshub-$1.XXXXXX")}
  mkdir -p "$RESULTS_DIR"
  LOG=$RESULTS_DIR/results.log
  : >"$LOG"
}

# keep_result KEY FILE: the first RESULT line of wsload's output FILE goes
# to LOG (prefixed with KEY) and its key=value pairs into the caller's
# associative array R as R[KEY.key]; returns 1 (with a note in NOTES) when
# there is none.
keep_result() {
  local line kv
  line=$(grep -m1 '^RESULT ' "$2" || true)
  if [[ -z $line ]]; then
    NOTES+=("$1: no RESULT line (see ${2%.out}.err)")
    return 1
  fi
  echo "$1 $line" >>"$LOG"
  for kv in ${line#RESULT }; do
    R[$1.${kv%%=*}]=${kv#*=}
  done
}

# print_tail [LINE...]: the notes (NOTES), then the exact commands (CMDS),
# after the extra LINEs, as markdown.
print_tail() {
  if ((${#NOTES[@]})); then
    echo
    echo "Notes:"
    for n in "${NOTES[@]}"; do echo "- $n"; done
  fi
  echo
  echo "Commands (PORT: the port each fresh server picked):"
  echo
  echo '```sh'
  local l
  for l in "$@"; do echo "$l"; done
  for l in "${CMDS[@]}"; do echo "$l"; done
  echo '```'
}

# require_whole VAR...: dies unless each variable holds a whole number.
require_whole() {
  local v
  for v in "$@"; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number"
  done
}

# As many descriptors as the hard limit allows (19000 connections need it).
raise_nofile() { ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; }

# stop_pid PID: SIGTERM, then SIGKILL after 5 s; reaps it. Nothing if PID
# is empty or already gone.
stop_pid() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_pid "$client_pid"; client_pid=
  stop_pid "$server_pid"; server_pid=
}

# lib_traps: on exit stop what is running; SIGINT/SIGTERM exit (status 130).
lib_traps() {
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

# wait_port LOG PID: waits up to 10 s for "listening on …PORT" (wshub,
# the Node chat: "listening on http://HOST:PORT"; the relay: "relay
# listening on PORT") in LOG; sets port. Returns 1 if PID exits or the time
# runs out first.
wait_port() {
  local log=$1 pid=$2
  port=
  for _ in $(seq 100); do
    port=$(grep -o 'listening on [^ ]*' "$log" 2>/dev/null | head -n1 | grep -o '[0-9]*$' || true)
    [[ -n $port ]] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

# start_pinned NAME LOG CMD...: starts CMD pinned to SERVER_CPU (stdout
# discarded, stderr to LOG), waits for its port; sets server_pid, port and
# server_cmd (the command as run, for the report). Dies (after showing the
# log) if it does not start listening.
start_pinned() {
  local name=$1 log=$2
  shift 2
  server_cmd="taskset -c $SERVER_CPU $*"
  taskset -c "$SERVER_CPU" "$@" >/dev/null 2>"$log" &
  server_pid=$!
  if ! wait_port "$log" "$server_pid"; then
    cat "$log" >&2
    die "$name did not start"
  fi
}

# status_kib PID KEY: a /proc/PID/status value in KiB (VmRSS, VmHWM), or
# nothing if the process is gone.
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# proc_cpu_ticks PID: utime + stime (after the ")" that ends the name).
proc_cpu_ticks() {
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# children_mark DIR: sets KIDS to the CPU seconds of this shell's
# waited-for children so far (DIR holds a scratch file). `times` must run
# in this shell: in a $(...) subshell it would see that subshell's children.
children_mark() {
  times >"$1/.times"
  KIDS=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] } print s }' \
    "$1/.times")
}

# node_chat_ready DIR: installs the Node chat's ws@8 (npm, into DIR) on
# first use.
node_chat_ready() {
  if [[ ! -d $1/node_modules/ws ]]; then
    echo "$LIB_NAME: installing the Node chat's ws@8" >&2
    npm install --prefix "$1" --no-audit --no-fund >&2
  fi
}
