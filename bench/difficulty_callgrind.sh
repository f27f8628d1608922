#!/usr/bin/env bash
# Instruction counts (valgrind --tool=callgrind) for issue 11's two server checks, immune to the
# noise of a shared machine:
#   submit  instructions per accepted submit in kp_protocol_handle (parse, checks, hash, event,
#           response: everything the difficulty touches) with the default -difficulty 1, the new
#           server and BASELINE_SERVER, under `kupool-client -n 10 -pipeline 16 -rate max
#           -duration 8s` against -min_submit_interval 0
#   walk    instructions of the broadcast walk (broadcast.c's step(), everything it calls) per
#           session per broadcast, 1,000 sessions, a job every second, 20 s: vardiff off, then on
#           in its worst case, every job changing every session's difficulty: the sessions start
#           at 2^53 with -vardiff_target 200ms, find nothing at 100 H/s, and each job's silence
#           step (÷4) takes them down (about 25 jobs to reach 1), so every job is preceded by its
#           own set_difficulty line in every session; and on with no change (a 1 h target: the
#           cost of having vardiff on at all)
#
#   BASELINE_SERVER=/path/kupool-server BENCH_CLIENT=/path/kupool-client bench/difficulty_callgrind.sh
#
# BENCH_CLIENT must understand set_difficulty (the searching client of issue 11); the submit
# runs use build-bench's client. Kills what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKP_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j2 >/dev/null
server=$build/kupool-server
searcher=${BENCH_CLIENT:-$build/kupool-client}
work=$(mktemp -d /tmp/kp-difficulty-cg.XXXXXX)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# start NAME BINARY VALGRIND-ARGS -- SERVER-ARGS...: the server under callgrind; sets pid, port.
start() {
  local name=$1 bin=$2 vg=()
  shift 2
  while [[ $1 != -- ]]; do vg+=("$1"); shift; done
  shift
  valgrind --tool=callgrind "${vg[@]}" --callgrind-out-file="$work/$name.cg" \
    "$bin" -addr 127.0.0.1:0 -data_dir "$work/data-$name" "$@" 2>"$work/$name.log" &
  pid=$!
  port=
  for _ in $(seq 300); do
    port=$(sed -n 's/.*started listen="127.0.0.1:\([0-9]*\)".*module=tcp.server.*/\1/p' "$work/$name.log" | head -1)
    [[ -n $port ]] && return 0
    sleep 0.1
  done
  cat "$work/$name.log" >&2
  exit 1
}
stop() {
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
}
total_ir() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n { gsub(",", "", $1); n = $1 } END { print n }'; }

submit_run() {
  local name=$1 bin=$2 accepted ir
  start "$name" "$bin" --toggle-collect=kp_protocol_handle -- -min_submit_interval 0
  "$build/kupool-client" -addr "127.0.0.1:$port" -n 10 -pipeline 16 -rate max -duration 8s -json \
    >"$work/$name.json" 2>/dev/null
  stop
  accepted=$(jq -r .accepted "$work/$name.json")
  ir=$(total_ir "$work/$name.cg")
  echo "submit $name: accepted=$accepted instructions=$ir per_submit=$(awk -v i="$ir" -v n="$accepted" 'BEGIN { printf "%.0f", i / n }')"
}

walk_run() {
  local name=$1 broadcasts ir
  shift
  start "$name" "$server" --toggle-collect=step -- -interval 1s "$@"
  "$searcher" -addr "127.0.0.1:$port" -n 1000 -duration 20s -connect_rate 2000 -json \
    >"$work/$name.json" 2>/dev/null
  stop
  broadcasts=$(grep -c 'broadcast job' "$work/$name.log" || true)
  ir=$(total_ir "$work/$name.cg")
  echo "walk $name: broadcasts=$broadcasts set_difficulty_received=$(jq -r '.search.set_difficulty // 0' "$work/$name.json") accepted=$(jq -r .accepted "$work/$name.json") instructions=$ir per_session_per_broadcast=$(awk -v i="$ir" -v b="$broadcasts" 'BEGIN { printf "%.0f", i / (b * 1000) }')"
}

if [[ -n ${BASELINE_SERVER:-} ]]; then
  submit_run new "$server"
  submit_run baseline "$BASELINE_SERVER"
fi
walk_run vardiff_off
walk_run vardiff_on_unchanged -difficulty 1000 -vardiff_target 1h
walk_run vardiff_on_all_change -difficulty 9007199254740992 -vardiff_target 200ms
