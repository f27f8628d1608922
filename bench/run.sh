#!/usr/bin/env bash
# The server's own speed and memory on loopback, memory backends (issue 3). Three scenarios:
#   (a) 10,000 idle authorized sessions: server RSS per session
#   (b) 19,000 sessions x 0.95 submit/s, a job every 2 s: errors, latency, broadcast spread, CPU
#   (c) rate limit off, 100 sessions x 16 submits in flight: accepted submits/s and server CPU per
#       submit, next to two floors measured in the same run: bench/floor_server (the same
#       client against a server that only reads, parses, hashes and writes) and
#       bench/floor_submit (parse + hash + format in process, no I/O)
#       measured in the same run, and the top of a `perf record` profile of the server.
#
#   bench/run.sh [SECONDS]        (default 20 s for b and c)
#   bench/run.sh idle [BUILD_DIR] only (a), printed, docs untouched: e.g. `bench/run.sh idle
#                                 /work/main/build` for a baseline from another built tree
#
# Installs what is missing, builds a Release tree in build-bench/, and replaces the "core"
# section of docs/benchmarks.md with what it measured. Needs root for apt-get only.
set -euo pipefail
cd "$(dirname "$0")/.."
idle_only=
if [[ ${1:-} == idle ]]; then
  idle_only=1
  build=${2:-build-bench}
  seconds=0
else
  build=build-bench
  seconds=${1:-20}
fi

if [[ -z $idle_only ]]; then
  scripts/deps.sh
  need=()
  command -v jq >/dev/null || need+=(jq)
  command -v curl >/dev/null || need+=(curl)
  command -v perf >/dev/null || need+=(linux-perf)
  if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
fi
if [[ $build == build-bench ]]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKP_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)" >/dev/null
fi
server=$build/kupool-server
client=$build/kupool-client

work=$(mktemp -d /tmp/kupool-bench.XXXXXX)
server_pid=
client_pid=
cleanup() {
  [[ -n $client_pid ]] && kill "$client_pid" 2>/dev/null || true
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# start_server NAME ARGS...: starts kupool-server with an admin endpoint; sets server_pid,
# port (TCP) and admin (host:port of /metrics).
start_server() {
  local name=$1
  shift
  log=$work/$name.server.log
  "$server" -addr 127.0.0.1:0 -ws_addr 127.0.0.1:0 -http_addr 127.0.0.1:0 -data_dir "$work/data-$name" \
    "$@" 2>"$log" &
  server_pid=$!
  port= ws_port= admin=
  for _ in $(seq 100); do
    port=$(sed -n 's/.*started listen="127.0.0.1:\([0-9]*\)".*module=tcp.server.*/\1/p' "$log" | head -1)
    ws_port=$(sed -n 's/.*started listen="127.0.0.1:\([0-9]*\)".*module=ws.server.*/\1/p' "$log" | head -1)
    admin=$(sed -n 's/.*started listen="\(127.0.0.1:[0-9]*\)".*module=http.admin.*/\1/p' "$log" | head -1)
    [[ -n $port && -n $ws_port && -n $admin ]] && return 0
    sleep 0.1
  done
  cat "$log" >&2
  echo "bench: the server did not start" >&2
  exit 1
}

stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

metric() { curl -fsS "http://$admin/metrics" | awk -v m="$1" '$1 == m { v = $2 } END { print v + 0 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$server_pid/stat"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf (b > 0 ? "%.2f" : "-"), a / b }'; }

# ---- (a) idle sessions ----------------------------------------------------------------------
# idle_sessions NAME ADDRESS: 10,000 sessions authorize, take their job and then only receive
# jobs (-rate 0); sets sessions_a, rss0, rss1 (KiB) and per_session_a (bytes). One transport per
# server run: the two figures must not share a heap.
idle_sessions() {
  local name=$1 addr=$2
  start_server "$name" -interval 30s
  sleep 0.5
  rss0=$(rss_kib)
  local target=${addr/PORT/$port}
  [[ $addr == ws://* ]] && target=${addr/PORT/$ws_port}
  "$client" -addr "$target" -n 10000 -rate 0 -duration 60s -connect_rate 5000 \
    -src 127.0.0.2-127.0.0.3 -json >"$work/$name.json" 2>"$work/$name.client.log" &
  client_pid=$!
  for _ in $(seq 300); do
    [[ "$(metric kupool_sessions)" -ge 10000 ]] && break
    sleep 0.1
  done
  sessions_a=$(metric kupool_sessions)
  sleep 2 # let the last writes drain
  rss1=$(rss_kib)
  kill -INT "$client_pid" 2>/dev/null || true
  wait "$client_pid" 2>/dev/null || true
  client_pid=
  stop_server
  per_session_a=$(awk -v a="$rss0" -v b="$rss1" -v n="$sessions_a" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
  echo "$name sessions=$sessions_a rss_before=${rss0}KiB rss_after=${rss1}KiB per_session=${per_session_a}B" >&2
}

echo "== (a) 10,000 idle authorized sessions, TCP then WebSocket" >&2
idle_sessions a-tcp "127.0.0.1:PORT"
tcp_sessions=$sessions_a tcp_rss0=$rss0 tcp_rss1=$rss1 tcp_per_session=$per_session_a
idle_sessions a-ws "ws://127.0.0.1:PORT/"
ws_sessions=$sessions_a ws_rss0=$rss0 ws_rss1=$rss1 ws_per_session=$per_session_a
if [[ -n $idle_only ]]; then
  echo "idle per session: tcp=${tcp_per_session}B ws=${ws_per_session}B ($server)"
  exit 0
fi

# ---- (b) 19k sessions at 0.95 submit/s --------------------------------------------------------
echo "== (b) 19,000 sessions x 0.95 submit/s, a job every 2 s (${seconds}s)" >&2
start_server b -interval 2s
cpu0=$(cpu_s)
"$client" -addr "127.0.0.1:$port" -n 19000 -rate 0.95 -duration "${seconds}s" -connect_rate 5000 \
  -src 127.0.0.2-127.0.0.9 -json >"$work/b.json" 2>"$work/b.client.log"
cpu1=$(cpu_s)
stop_server
b() { jq -r "$1" "$work/b.json"; }
cpu_b=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.1f", b - a }')
rejected_b=$(b '[.rejected // {} | to_entries[] | .value] | add // 0')
echo "connected=$(b .connected) accepted=$(b .accepted) rejected=$rejected_b cpu=${cpu_b}s" >&2

# ---- (c) throughput with the rate limit off ---------------------------------------------------
echo "== (c) 100 sessions x 16 in flight, -min_submit_interval 0 (${seconds}s)" >&2
floor=$("$build/bench/floor_submit" 2000000)
floor_ns=$(echo "$floor" | sed -n 's/.*ns_per_submit=\([0-9]*\).*/\1/p')
# The I/O floor: the same client, same load, against floor_server.
"$build/bench/floor_server" >"$work/floor_server.out" &
server_pid=$!
fport=
for _ in $(seq 50); do
  fport=$(sed -n 's/^listen=//p' "$work/floor_server.out")
  [[ -n $fport ]] && break
  sleep 0.1
done
[[ -n $fport ]] || { echo "bench: floor_server did not start" >&2; exit 1; }
"$client" -addr "127.0.0.1:$fport" -n 100 -pipeline 16 -rate max -duration "${seconds}s" -json \
  >"$work/floor.json" 2>/dev/null
floor_cpu=$(cpu_s)
stop_server
floor_accepted=$(jq -r .accepted "$work/floor.json")
floor_rate=$(jq -r '.accepted_per_s | floor' "$work/floor.json")
floor_io_ns=$(awk -v c="$floor_cpu" -v n="$floor_accepted" 'BEGIN { printf "%.0f", c * 1e9 / n }')
echo "floor_server accepted=$floor_accepted per_s=$floor_rate per_submit=${floor_io_ns}ns" >&2
start_server c -min_submit_interval 0
cpu0=$(cpu_s)
profile=""
if perf record -e cpu-clock -F 999 -g -p "$server_pid" -o "$work/perf.data" -- sleep "$((seconds / 2 + 2))" \
  >/dev/null 2>&1 & then
  perf_pid=$!
fi
"$client" -addr "127.0.0.1:$port" -n 100 -pipeline 16 -rate max -duration "${seconds}s" -json \
  >"$work/c.json" 2>"$work/c.client.log"
cpu1=$(cpu_s)
wait "$perf_pid" 2>/dev/null || true
stop_server
c() { jq -r "$1" "$work/c.json"; }
accepted_c=$(c .accepted)
rate_c=$(c '.accepted_per_s | floor')
cpu_c=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.1f", b - a }')
us_per_submit=$(awk -v c="$cpu_c" -v n="$accepted_c" 'BEGIN { printf "%.2f", c * 1e6 / n }')
if [[ -s $work/perf.data ]]; then
  profile=$(perf report -i "$work/perf.data" --no-children --stdio --sort symbol 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -15 || true)
fi
echo "accepted=$accepted_c per_s=$rate_c cpu=${cpu_c}s per_submit=${us_per_submit}us floor=${floor_ns}ns" >&2

cat >"$work/section.md" <<EOF
<!-- core:begin (written by bench/run.sh; do not edit by hand) -->
## Server: sessions, latency, throughput (memory backends, loopback)

Measured $(date -u +%Y-%m-%dT%H:%MZ) by \`bench/run.sh $seconds\` on $(nproc) cores
($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo),
kupool-client on the same machine (it shares the two cores with the server).

### (a) 10,000 idle authorized sessions

| | TCP | WebSocket | target |
|---|---:|---:|---:|
| sessions held | $tcp_sessions | $ws_sessions | 10,000 |
| server RSS before / after | ${tcp_rss0} KiB / ${tcp_rss1} KiB | ${ws_rss0} KiB / ${ws_rss1} KiB | |
| **server memory per idle session** | **${tcp_per_session} bytes** | **${ws_per_session} bytes** | ≤ 1024 bytes |

### (b) 19,000 sessions × 0.95 submit/s, a job every 2 s, ${seconds} s

| | value |
|---|---:|
| connected / closed by server | $(b .connected) / $(b .closed_by_server) |
| accepted | $(b .accepted) |
| rejected (any error) | $rejected_b |
| latency p50 / p99 / max | $(b '.latency_us.p50 / 1000') ms / $(b '.latency_us.p99 / 1000') ms / $(b '.latency_us.max / 1000') ms |
| jobs seen / receipts missed | $(b .jobs.seen) / $(b .jobs.missed) |
| broadcast spread (first to last receipt of a job) mean / max | $(b '.jobs.spread_mean_ms | floor') ms / $(b '.jobs.spread_max_ms | floor') ms |
| server CPU | ${cpu_b} s over the run |

### (c) rate limit off: 100 sessions × 16 in flight, ${seconds} s

| | value | ratio |
|---|---:|---:|
| I/O floor: read + parse + hash + write, nothing else (\`floor_server\`, same client and load) | ${floor_io_ns} ns/submit, ${floor_rate}/s | 1.00 |
| **kupool-server CPU per accepted submit** (all threads, syscalls included) | **${us_per_submit} µs** | $(ratio "$(awk -v u="$us_per_submit" 'BEGIN{print u*1000}')" "$floor_io_ns") |
| in-process floor: parse + hash + format, no I/O (\`floor_submit\`) | ${floor_ns} ns/submit | $(ratio "$floor_ns" "$floor_io_ns") |
| kupool-server accepted submits/s | $rate_c | $(ratio "$rate_c" "$floor_rate") of the I/O floor's rate |
| accepted / client latency p50, p99 | $accepted_c / $(c '.latency_us.p50 / 1000') ms, $(c '.latency_us.p99 / 1000') ms | |

Top of the server's profile during (c) (\`perf record -e cpu-clock -g\`, self time by symbol):

\`\`\`
$profile
\`\`\`
<!-- core:end -->
EOF

bench/doc_section.sh core "$work/section.md"
cat "$work/section.md"
