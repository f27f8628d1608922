#!/usr/bin/env bash
# SPEC §8's two performance checks on the server (issue 11), each a same-run comparison:
#   (c) the submit path with the default -difficulty 1 against BASELINE_SERVER (the commit before
#       difficulty): bench/run.sh's scenario (c) for both binaries, one after the other
#   (b) 19,000 sessions at the load client's defaults (0.95 submit/s, -hashrate 100), a job every
#       2 s: the broadcast spread with vardiff off, then on (-vardiff_target 10s), same binary
#
#   BASELINE_SERVER=/path/kupool-server BENCH_CLIENT=/path/kupool-client bench/difficulty.sh [SECONDS]
#
# BENCH_ROUNDS=N repeats (b) N times (off, on, off, on, ...); BENCH_SKIP_C=1 skips (c).
# BENCH_CLIENT must understand set_difficulty (the searching client of issue 11; a client that
# does not drops every session at its first set_difficulty); default: build-bench's. Without
# BASELINE_SERVER, (c) is skipped. Prints the figures; docs/benchmarks.md's "Difficulty" section
# is written by hand from them. Kills what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
build=build-bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKP_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j2 >/dev/null
server=$build/kupool-server
client=${BENCH_CLIENT:-$build/kupool-client}

if [[ -n ${BASELINE_SERVER:-} && -z ${BENCH_SKIP_C:-} ]]; then
  echo "== (c) -difficulty 1 (the default) against $BASELINE_SERVER, bench/run.sh $seconds" >&2
  BENCH_SCENARIOS=c bench/run.sh "$seconds" | grep '^| (c)'
fi

work=$(mktemp -d /tmp/kp-difficulty-b.XXXXXX)
server_pid=
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$server_pid/stat"; }

# run_b NAME SERVER-ARGS...: one 19,000-session run; prints the figures of its summary, and the
# server's own broadcast walk (kupool_broadcast_duration_seconds, polled every 0.2 s: the distinct
# values, one per job) beside the client's spread (first to last receipt, which includes the
# client's own lag on a shared machine).
run_b() {
  local name=$1 log port='' admin='' c0 c1 poller
  shift
  log=$work/$name.log
  "$server" -addr 127.0.0.1:0 -http_addr 127.0.0.1:0 -interval 2s -data_dir "$work/data-$name" "$@" 2>"$log" &
  server_pid=$!
  for _ in $(seq 100); do
    port=$(sed -n 's/.*started listen="127.0.0.1:\([0-9]*\)".*module=tcp.server.*/\1/p' "$log" | head -1)
    admin=$(sed -n 's/.*started listen="\(127.0.0.1:[0-9]*\)".*module=http.admin.*/\1/p' "$log" | head -1)
    [[ -n $port && -n $admin ]] && break
    sleep 0.1
  done
  [[ -n $port && -n $admin ]] || { cat "$log" >&2; exit 1; }
  : >"$work/$name.walk"
  (while kill -0 "$server_pid" 2>/dev/null; do
     curl -fsS "http://$admin/metrics" 2>/dev/null |
       awk '$1 == "kupool_broadcast_duration_seconds" { print $2 }' >>"$work/$name.walk" || true
     sleep 0.2
   done) &
  poller=$!
  c0=$(cpu_s)
  "$client" -addr "127.0.0.1:$port" -n 19000 -duration "${seconds}s" -connect_rate 5000 \
    -src 127.0.0.2-127.0.0.9 -json >"$work/$name.json" 2>/dev/null
  c1=$(cpu_s)
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  wait "$poller" 2>/dev/null || true
  local walk
  walk=$(uniq "$work/$name.walk" | awk '$1 > 0 { n++; s += $1; if ($1 > m) m = $1 }
    END { printf "{\"walks\":%d,\"walk_mean_ms\":%.1f,\"walk_max_ms\":%.1f}", n, n ? s / n * 1000 : 0, m * 1000 }')
  jq -c --arg name "$name" --arg cpu "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", b - a }')" \
    --argjson walk "$walk" \
    '{run: $name, connected, closed_by_server, accepted, rejected, spread_mean_ms: .jobs.spread_mean_ms,
      spread_max_ms: .jobs.spread_max_ms, jobs: .jobs.seen, p50_us: .latency_us.p50,
      p99_us: .latency_us.p99, server_cpu_s: ($cpu | tonumber),
      set_difficulty: .search.set_difficulty, difficulty_min: .search.difficulty_min,
      difficulty_max: .search.difficulty_max} + $walk' "$work/$name.json"
}
# BENCH_ROUNDS=N alternates off and on N times, so the noise of a shared machine shows.
echo "== (b) 19,000 sessions, vardiff off then on (${seconds}s each), client $client" >&2
for _ in $(seq "${BENCH_ROUNDS:-1}"); do
  run_b vardiff_off
  run_b vardiff_on -vardiff_target 10s
done
