#!/usr/bin/env bash
# The server's own speed and memory on loopback, memory backends (issue 3). Four scenarios:
#   (a) 10,000 idle authorized sessions: server RSS per session, once over TCP and once over
#       WebSocket (ws://, server started with -ws_addr), one server run per transport so the
#       two figures do not share a heap
#   (b) 19,000 sessions x 0.95 submit/s, a job every 2 s: errors, latency, broadcast spread, CPU
#   (c) rate limit off, 100 sessions x 16 submits in flight: accepted submits/s and server CPU per
#       submit, next to two floors measured in the same run: bench/floor_server (the same
#       client against a server that only reads, parses, hashes and writes) and
#       bench/floor_submit (parse + hash + format in process, no I/O)
#       measured in the same run, and the top of a `perf record` profile of the server.
#   (d) fairness: one session pipelining unpaced (-pipeline 1024 -rate max) while another
#       (-rate 20) measures its round trips: the probe's latency p50/p99 and the flood's rate.
#
#   bench/run.sh [SECONDS]        (default 20 s for b, c and d; (a) takes no duration)
#
# BENCH_PROFILE_OUT=PREFIX keeps (c)'s profile top in PREFIX.new and, with a baseline, profiles the
# baseline's (c) run too, into PREFIX.baseline (otherwise only the new binary is profiled).
# BASELINE_SERVER=/path/to/kupool-server runs every chosen scenario against that binary too, in
# the same run right after the new one, and prints new/baseline ratios (e.g. the previous commit's
# Release build; it must know -ws_addr for (a)). BENCH_SCENARIOS=bcd (default abcd) runs a
# subset; only a run of a, b and c replaces the section of docs/benchmarks.md. The idle figures
# alone, new against another built tree, docs untouched (what `bench/run.sh idle BUILD_DIR` did):
#   BENCH_SCENARIOS=a BASELINE_SERVER=/work/main/build/kupool-server bench/run.sh
#
# BENCH_SERVER_FLAGS="-max_conns_per_ip 3000 -ban_time 10m" adds server flags to every run of the
# new binary (not the baseline's, which may not know them): e.g. (b) with SPEC §9's limits on.
#
# Installs what is missing, builds a Release tree in build-bench/, and replaces the "core"
# section of docs/benchmarks.md with what it measured. Needs root for apt-get only.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
scenarios=${BENCH_SCENARIOS:-abcd}
baseline=${BASELINE_SERVER:-}
if [[ -n $baseline && ! -x $baseline ]]; then
  echo "bench: BASELINE_SERVER=$baseline is not an executable" >&2
  exit 2
fi
want() { [[ $scenarios == *"$1"* ]]; }

scripts/deps.sh
need=()
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
command -v perf >/dev/null || need+=(linux-perf)
if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi

build='build-bench'
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKP_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
server=$build/kupool-server
client=$build/kupool-client
srv_bin=$server # the binary start_server runs: the new one, or the baseline

work=$(mktemp -d /tmp/kupool-bench.XXXXXX)
server_pid=
client_pid=
cleanup() {
  if [[ -n $client_pid ]]; then kill "$client_pid" 2>/dev/null || true; fi
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# start_server NAME ARGS...: starts kupool-server with an admin endpoint; sets server_pid,
# port (TCP), admin (host:port of /metrics) and, when ARGS hold -ws_addr, ws_port (WebSocket).
start_server() {
  local name=$1 with_ws='' arg
  shift
  for arg; do [[ $arg == -ws_addr ]] && with_ws=1; done
  log=$work/$name.server.log
  local extra=()
  [[ $srv_bin == "$server" && -n ${BENCH_SERVER_FLAGS:-} ]] && read -r -a extra <<<"$BENCH_SERVER_FLAGS"
  "$srv_bin" -addr 127.0.0.1:0 -http_addr 127.0.0.1:0 -data_dir "$work/data-$name" "$@" "${extra[@]}" 2>"$log" &
  server_pid=$!
  port='' ws_port='' admin=''
  for _ in $(seq 100); do
    port=$(sed -n 's/.*started listen="127.0.0.1:\([0-9]*\)".*module=tcp.server.*/\1/p' "$log" | head -1)
    admin=$(sed -n 's/.*started listen="\(127.0.0.1:[0-9]*\)".*module=http.admin.*/\1/p' "$log" | head -1)
    [[ -n $with_ws ]] &&
      ws_port=$(sed -n 's/.*started listen="127.0.0.1:\([0-9]*\)".*module=ws.server.*/\1/p' "$log" | head -1)
    [[ -n $port && -n $admin && ( -z $with_ws || -n $ws_port ) ]] && return 0
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
# bench_a TAG TRANSPORT (tcp or ws): 10,000 sessions authorize, take their job and then only
# receive jobs (-rate 0), against $srv_bin on a server of its own; "sessions rss_before_KiB
# rss_after_KiB bytes_per_session" into $work/a.TRANSPORT.TAG.
bench_a() {
  local tag=$1 tr=$2 target sessions rss0 rss1 per
  echo "== (a) [$tag] 10,000 idle authorized sessions over $tr" >&2
  if [[ $tr == ws ]]; then
    start_server "a-$tr-$tag" -interval 30s -ws_addr 127.0.0.1:0
    target=ws://127.0.0.1:$ws_port/
  else
    start_server "a-$tr-$tag" -interval 30s
    target=127.0.0.1:$port
  fi
  sleep 0.5
  rss0=$(rss_kib)
  "$client" -addr "$target" -n 10000 -rate 0 -duration 60s -connect_rate 5000 \
    -src 127.0.0.2-127.0.0.3 -json >"$work/a.$tr.$tag.json" 2>"$work/a.$tr.$tag.client.log" &
  client_pid=$!
  for _ in $(seq 300); do
    [[ "$(metric kupool_sessions)" -ge 10000 ]] && break
    sleep 0.1
  done
  sessions=$(metric kupool_sessions)
  sleep 2 # let the last writes drain
  rss1=$(rss_kib)
  kill -INT "$client_pid" 2>/dev/null || true
  wait "$client_pid" 2>/dev/null || true
  client_pid=
  stop_server
  per=$(awk -v a="$rss0" -v b="$rss1" -v n="$sessions" 'BEGIN { printf "%.0f", (n > 0 ? (b - a) * 1024 / n : 0) }')
  echo "$sessions $rss0 $rss1 $per" >"$work/a.$tr.$tag"
  echo "sessions=$sessions rss_before=${rss0}KiB rss_after=${rss1}KiB per_session=${per}B" >&2
}
if want a; then
  for tr in tcp ws; do
    srv_bin=$server bench_a new "$tr"
    [[ -n $baseline ]] && srv_bin=$baseline bench_a baseline "$tr"
  done
  read -r tcp_sessions tcp_rss0 tcp_rss1 tcp_per_session <"$work/a.tcp.new"
  read -r ws_sessions ws_rss0 ws_rss1 ws_per_session <"$work/a.ws.new"
fi

# ---- (b) 19k sessions at 0.95 submit/s --------------------------------------------------------
# bench_b TAG: one run against $srv_bin into $work/b.TAG.json, CPU seconds in $work/b.TAG.cpu.
bench_b() {
  local tag=$1
  echo "== (b) [$tag] 19,000 sessions x 0.95 submit/s, a job every 2 s (${seconds}s)" >&2
  start_server "b-$tag" -interval 2s
  local c0 c1
  c0=$(cpu_s)
  "$client" -addr "127.0.0.1:$port" -n 19000 -rate 0.95 -duration "${seconds}s" -connect_rate 5000 \
    -src 127.0.0.2-127.0.0.9 -json >"$work/b.$tag.json" 2>"$work/b.$tag.client.log"
  c1=$(cpu_s)
  stop_server
  awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", b - a }' >"$work/b.$tag.cpu"
  echo "connected=$(jq -r .connected "$work/b.$tag.json") accepted=$(jq -r .accepted "$work/b.$tag.json") cpu=$(cat "$work/b.$tag.cpu")s" >&2
}
if want b; then
  srv_bin=$server bench_b new
  [[ -n $baseline ]] && srv_bin=$baseline bench_b baseline
  cp "$work/b.new.json" "$work/b.json"
  b() { jq -r "$1" "$work/b.json"; }
  cpu_b=$(cat "$work/b.new.cpu")
  rejected_b=$(b '[.rejected // {} | to_entries[] | .value] | add // 0')
fi

if want c; then
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
# bench_c TAG: one run against $srv_bin into $work/c.TAG.json, CPU seconds in $work/c.TAG.cpu;
# the profile only for the new binary.
bench_c() {
  local tag=$1 c0 c1 perf_pid=
  start_server "c-$tag" -min_submit_interval 0
  c0=$(cpu_s)
  if [[ $tag == new || -n ${BENCH_PROFILE_OUT:-} ]] && perf record -e cpu-clock -F 999 -g -p "$server_pid" \
    -o "$work/perf.$tag.data" -- sleep "$((seconds / 2 + 2))" >/dev/null 2>&1 & then
    perf_pid=$!
  fi
  "$client" -addr "127.0.0.1:$port" -n 100 -pipeline 16 -rate max -duration "${seconds}s" -json \
    >"$work/c.$tag.json" 2>"$work/c.$tag.client.log"
  c1=$(cpu_s)
  [[ -n $perf_pid ]] && { wait "$perf_pid" 2>/dev/null || true; }
  stop_server
  awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", b - a }' >"$work/c.$tag.cpu"
}
srv_bin=$server bench_c new
[[ -n $baseline ]] && srv_bin=$baseline bench_c baseline
cp "$work/c.new.json" "$work/c.json"
profile=""
c() { jq -r "$1" "$work/c.json"; }
accepted_c=$(c .accepted)
rate_c=$(c '.accepted_per_s | floor')
cpu_c=$(cat "$work/c.new.cpu")
us_per_submit=$(awk -v c="$cpu_c" -v n="$accepted_c" 'BEGIN { printf "%.2f", c * 1e6 / n }')
top_of() { perf report -i "$1" --no-children --stdio --sort symbol 2>/dev/null | grep -E '^ +[0-9.]+%' | head -15 || true; }
if [[ -s $work/perf.new.data ]]; then
  profile=$(top_of "$work/perf.new.data")
fi
if [[ -n ${BENCH_PROFILE_OUT:-} ]]; then
  printf '%s\n' "$profile" >"$BENCH_PROFILE_OUT.new"
  [[ -s $work/perf.baseline.data ]] && top_of "$work/perf.baseline.data" >"$BENCH_PROFILE_OUT.baseline"
fi
echo "accepted=$accepted_c per_s=$rate_c cpu=${cpu_c}s per_submit=${us_per_submit}us floor=${floor_ns}ns" >&2
fi

# ---- (d) fairness: one unpaced pipelining session next to a paced probe -----------------------
# bench_d TAG: the flood (-n 1 -pipeline 1024 -rate max) starts first; the probe (-n 1 -rate 20)
# runs for SECONDS inside it. Results in $work/d.TAG.{flood,probe}.json.
bench_d() {
  local tag=$1 flood_pid
  echo "== (d) [$tag] fairness: 1 session -pipeline 1024 -rate max, probe -rate 20 (${seconds}s)" >&2
  start_server "d-$tag" -min_submit_interval 0
  "$client" -addr "127.0.0.1:$port" -n 1 -pipeline 1024 -rate max -duration "$((seconds + 2))s" \
    -json >"$work/d.$tag.flood.json" 2>/dev/null &
  flood_pid=$!
  sleep 1
  "$client" -addr "127.0.0.1:$port" -n 1 -rate 20 -duration "${seconds}s" -json \
    >"$work/d.$tag.probe.json" 2>/dev/null
  wait "$flood_pid" || true
  stop_server
  echo "probe p50=$(jq .latency_us.p50 "$work/d.$tag.probe.json")us p99=$(jq .latency_us.p99 "$work/d.$tag.probe.json")us flood=$(jq '.accepted_per_s | floor' "$work/d.$tag.flood.json")/s" >&2
}
if want d; then
  srv_bin=$server bench_d new
  [[ -n $baseline ]] && srv_bin=$baseline bench_d baseline
fi

# ---- new vs baseline ---------------------------------------------------------------------------
if [[ -n $baseline ]]; then
  j() { jq -r "$2" "$work/$1" 2>/dev/null || echo -; }
  {
    echo "| scenario | measure | new | baseline | new/baseline |"
    echo "|---|---|---:|---:|---:|"
    if want a; then
      for tr in tcp ws; do
        read -r ns _ _ n <"$work/a.$tr.new"
        read -r os _ _ o <"$work/a.$tr.baseline"
        echo "| (a) | $tr bytes per idle session ($ns / $os held) | $n | $o | $(ratio "$n" "$o") |"
      done
    fi
    if want b; then
      for m in .latency_us.p50 .latency_us.p99 .jobs.spread_max_ms .accepted .errors; do
        n=$(j b.new.json "$m"); o=$(j b.baseline.json "$m")
        echo "| (b) | $m | $n | $o | $(ratio "$n" "$o") |"
      done
      echo "| (b) | server CPU s | $(cat "$work/b.new.cpu") | $(cat "$work/b.baseline.cpu") | $(ratio "$(cat "$work/b.new.cpu")" "$(cat "$work/b.baseline.cpu")") |"
    fi
    if want c; then
      for m in '.accepted_per_s | floor' .latency_us.p50 .latency_us.p99; do
        n=$(j c.new.json "$m"); o=$(j c.baseline.json "$m")
        echo "| (c) | ${m%% |*} | $n | $o | $(ratio "$n" "$o") |"
      done
      nc=$(awk -v c="$(cat "$work/c.new.cpu")" -v n="$(j c.new.json .accepted)" 'BEGIN { printf "%.2f", c * 1e6 / n }')
      oc=$(awk -v c="$(cat "$work/c.baseline.cpu")" -v n="$(j c.baseline.json .accepted)" 'BEGIN { printf "%.2f", c * 1e6 / n }')
      echo "| (c) | server CPU us/submit | $nc | $oc | $(ratio "$nc" "$oc") |"
    fi
    if want d; then
      for m in .latency_us.p50 .latency_us.p99 .latency_us.max; do
        n=$(j d.new.probe.json "$m"); o=$(j d.baseline.probe.json "$m")
        echo "| (d) | probe $m | $n | $o | $(ratio "$n" "$o") |"
      done
      n=$(j d.new.flood.json '.accepted_per_s | floor'); o=$(j d.baseline.flood.json '.accepted_per_s | floor')
      echo "| (d) | flood accepted/s | $n | $o | $(ratio "$n" "$o") |"
    fi
  } | tee "$work/compare.md"
else
  want a && echo "(a) bytes per idle session: tcp=${tcp_per_session}B ws=${ws_per_session}B"
  want d && echo "(d) probe p50=$(jq .latency_us.p50 "$work/d.new.probe.json")us p99=$(jq .latency_us.p99 "$work/d.new.probe.json")us"
fi

# The docs section needs (a), (b) and (c).
want a && want b && want c || exit 0

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
EOF
if [[ -s $work/compare.md ]]; then
  {
    echo
    echo "### Against a baseline in the same run (BASELINE_SERVER=$baseline)"
    echo
    echo "Each scenario ran against both binaries, one after the other, with the same client and load."
    echo
    cat "$work/compare.md"
  } >>"$work/section.md"
fi
echo "<!-- core:end -->" >>"$work/section.md"

bench/doc_section.sh core "$work/section.md"
cat "$work/section.md"
