#!/usr/bin/env bash
# run.sh — a short, bounded libFuzzer run of one wshub fuzz target.
#
#   tests/fuzz/run.sh <fuzzer binary> <seed corpus dir> <seconds> [libFuzzer args...]
#
# The seeds are copied into a temporary working corpus (the repository is
# never written to); new inputs, crash artifacts and the fuzz targets'
# temporary public directory go there too. The fuzzer runs for <seconds>
# with a 5 s per-input timeout and a 2 GiB RSS limit, then everything
# temporary is removed. The exit status is libFuzzer's: 0 when nothing was
# found, non-zero on a crash, leak, timeout or out-of-memory (except that
# its crash status 77, which meson and automake read as "skipped", becomes
# 1); the reproducer is then printed in hex, and kept in $FUZZ_ARTIFACTS if
# that is set.
set -uo pipefail

if [ "$#" -lt 3 ]; then
  echo "usage: $0 <fuzzer binary> <seed corpus dir> <seconds> [libFuzzer args...]" >&2
  exit 2
fi
bin=$1
seeds=$2
secs=$3
shift 3

if [ ! -x "$bin" ]; then
  echo "run.sh: $bin is not an executable" >&2
  exit 2
fi
if [ ! -d "$seeds" ]; then
  echo "run.sh: $seeds is not a directory" >&2
  exit 2
fi
case $secs in
'' | *[!0-9]*)
  echo "run.sh: seconds must be a positive integer, not '$secs'" >&2
  exit 2
  ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/wshub-fuzz-run.XXXXXX") || exit 2
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/corpus" "$work/artifacts" "$work/tmp"
cp -R "$seeds"/. "$work/corpus"/

name=$(basename "$bin")
echo "run.sh: $name for ${secs}s on $(find "$seeds" -type f | wc -l) seeds"
# The seeds directory comes last and read-only in spirit: libFuzzer writes
# new inputs only to the first corpus directory.
TMPDIR="$work/tmp" "$bin" \
  -max_total_time="$secs" \
  -timeout=5 \
  -rss_limit_mb=2048 \
  -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" \
  "$@" \
  "$work/corpus" "$seeds"
rc=$?

found=0
for a in "$work"/artifacts/*; do
  [ -f "$a" ] || continue
  found=1
  echo "run.sh: artifact $(basename "$a") ($(wc -c <"$a") bytes):"
  od -An -tx1 -v "$a" | head -n 64
  if [ -n "${FUZZ_ARTIFACTS:-}" ]; then
    mkdir -p "$FUZZ_ARTIFACTS" && cp "$a" "$FUZZ_ARTIFACTS"/ &&
      echo "run.sh: kept in $FUZZ_ARTIFACTS/$(basename "$a")"
  fi
done
if [ "$rc" -ne 0 ]; then
  echo "run.sh: $name failed (libFuzzer exit status $rc)" >&2
  [ "$rc" -eq 77 ] && rc=1
elif [ "$found" -ne 0 ]; then
  echo "run.sh: $name exited 0 but left an artifact" >&2
  rc=1
else
  echo "run.sh: $name: nothing found in ${secs}s"
fi
exit "$rc"
