#!/usr/bin/env bash
# Runs one libFuzzer harness for a while on a private copy of its seed corpus.
#   tests/fuzz/run.sh BINARY AREA SECONDS
# Seeds: tests/fuzz/corpus/AREA/ (copied to a temp dir: the repository is never modified);
# dictionary: tests/fuzz/AREA.dict when present. Exits non-zero on any crash, leak, timeout or
# out-of-memory, after printing the offending input as hex.
set -uo pipefail
[[ $# -eq 3 ]] || { echo "usage: $0 BINARY AREA SECONDS" >&2; exit 2; }
bin=$1 area=$2 seconds=$3
here=$(cd "$(dirname "$0")" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/kp_fuzz_${area}.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus" "$work/artifacts"
if [[ -d "$here/corpus/$area" ]]; then
  cp -R "$here/corpus/$area/." "$work/corpus/"
fi
args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -error_exitcode=77
      -print_final_stats=1 -artifact_prefix="$work/artifacts/")
[[ -f "$here/$area.dict" ]] && args+=(-dict="$here/$area.dict")

cd "$work" || exit 1
ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}" \
  "$bin" "${args[@]}" "$work/corpus"
rc=$?
if [[ $rc -ne 0 ]]; then
  echo "fuzz_$area: FAILED (exit $rc)" >&2
  for f in "$work"/artifacts/*; do
    [[ -f "$f" ]] || continue
    echo "== $(basename "$f") ($(stat -c %s "$f") bytes), first 4 KiB as hex:" >&2
    head -c 4096 "$f" | od -An -tx1 -v >&2
  done
fi
exit $rc
