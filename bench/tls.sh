#!/usr/bin/env bash
# TLS figures (issue 13, SPEC §9), each next to a baseline measured in the same run:
#   (t1) 10,000 idle authorized sessions over -tls_addr against 10,000 over plain TCP (one server
#        run each): server RSS per session (budget 16 KiB per TLS session), and the broadcast
#        spread (first to last receipt of a job, a job every 2 s) at 10,000 sessions each way;
#   (t2) full handshakes per second and server CPU per handshake, kupool-server -tls_addr against
#        `openssl s_server` with the same certificate and key, both driven by `openssl s_time -new`
#        (one client process, so both are measured at the same offered load; s_server serves
#        one connection at a time, so server CPU per handshake is the figure to compare).
#
#   bench/tls.sh [SECONDS]     (t2's duration per server, default 10)
#
# Builds a Release tree in build-bench/, makes test certificates (ECDSA P-256) with
# tests/services/tls_certs.sh, and replaces the "tls" section of docs/benchmarks.md. The plaintext
# figures with TLS off are bench/run.sh's (BENCH_SCENARIOS=ac BASELINE_SERVER=... bench/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}

scripts/deps.sh
need=()
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi

build='build-bench'
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKP_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j2 >/dev/null
server=$build/kupool-server
client=$build/kupool-client

work=$(mktemp -d /tmp/kupool-bench-tls.XXXXXX)
server_pid=
client_pid=
cleanup() {
  if [[ -n $client_pid ]]; then kill "$client_pid" 2>/dev/null || true; fi
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
tests/services/tls_certs.sh "$work/certs" 2>/dev/null
cert=$work/certs/chain.pem
key=$work/certs/server.key

# start_server NAME ARGS...: kupool-server with an admin endpoint; sets server_pid, port (TCP),
# tls_port (when -tls_addr is given) and admin.
start_server() {
  local name=$1
  shift
  log=$work/$name.server.log
  "$server" -addr 127.0.0.1:0 -http_addr 127.0.0.1:0 -data_dir "$work/data-$name" "$@" 2>"$log" &
  server_pid=$!
  port='' tls_port='' admin=''
  for _ in $(seq 100); do
    port=$(sed -n 's/.*started listen="127.0.0.1:\([0-9]*\)".*module=tcp.server.*/\1/p' "$log" | head -1)
    tls_port=$(sed -n 's/.*started listen="127.0.0.1:\([0-9]*\)".*module=tls.server.*/\1/p' "$log" | head -1)
    admin=$(sed -n 's/.*started listen="\(127.0.0.1:[0-9]*\)".*module=http.admin.*/\1/p' "$log" | head -1)
    [[ -n $port && -n $admin && ( $* != *-tls_addr* || -n $tls_port ) ]] && return 0
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

metric() { curl -fsS -m 5 "http://$admin/metrics" | awk -v m="$1" '$1 == m { v = $2 } END { print v + 0 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf (b > 0 ? "%.2f" : "-"), a / b }'; }

# ---- (t1) idle sessions and the broadcast ----------------------------------------------------
# bench_idle TRANSPORT (tcp or tls): 10,000 sessions authorize and then only receive jobs (a job
# every 2 s) for about 20 s after the ramp; "sessions rss0 rss1 per_session spread_mean spread_max" into $work/t1.TR.
bench_idle() {
  local tr=$1 target rss0 rss1 sessions per rate=2500 duration=24s
  echo "== (t1) 10,000 idle authorized sessions over $tr" >&2
  if [[ $tr == tls ]]; then
    # The load client's own handshakes (OpenSSL 3 client side, one core shared with the server
    # and everyone else) are the ramp's limit: a faster ramp leaves handshakes waiting past
    # -auth_timeout and measures the client, not the server. 40 s of ramp, then 20 s idle.
    rate=250 duration=60s
    start_server "t1-$tr" -interval 2s -tls_addr 127.0.0.1:0 -tls_cert "$cert" -tls_key "$key"
    target=tls://127.0.0.1:$tls_port
  else
    start_server "t1-$tr" -interval 2s
    target=127.0.0.1:$port
  fi
  sleep 0.5
  rss0=$(rss_kib "$server_pid")
  "$client" -addr "$target" -tls_insecure -n 10000 -rate 0 -duration "$duration" -connect_rate "$rate" \
    -src 127.0.0.2-127.0.0.3 -json >"$work/t1.$tr.json" 2>"$work/t1.$tr.client.log" &
  client_pid=$!
  for _ in $(seq 550); do
    [[ "$(metric kupool_sessions)" -ge 10000 ]] && break
    sleep 0.1
  done
  sessions=$(metric kupool_sessions)
  sleep 3 # the last handshakes' and writes' buffers are released
  rss1=$(rss_kib "$server_pid")
  wait "$client_pid" || true
  client_pid=
  stop_server
  per=$(awk -v a="$rss0" -v b="$rss1" -v n="$sessions" 'BEGIN { printf "%.0f", (n > 0 ? (b - a) * 1024 / n : 0) }')
  read -r mean max < <(jq -r '"\(.jobs.spread_mean_ms | floor) \(.jobs.spread_max_ms | floor)"' "$work/t1.$tr.json")
  echo "$sessions $rss0 $rss1 $per $mean $max" >"$work/t1.$tr"
  echo "sessions=$sessions rss_before=${rss0}KiB rss_after=${rss1}KiB per_session=${per}B spread mean=${mean}ms max=${max}ms" >&2
}
bench_idle tcp
bench_idle tls
read -r tcp_n tcp_rss0 tcp_rss1 tcp_per tcp_mean tcp_max <"$work/t1.tcp"
read -r tls_n tls_rss0 tls_rss1 tls_per tls_mean tls_max <"$work/t1.tls"

# ---- (t2) handshakes per second --------------------------------------------------------------
# s_time_run NAME PORT PID: `openssl s_time -new` for $seconds s against PORT; "connections/s
# cpu_ms_per_handshake" of process PID into $work/t2.NAME.
s_time_run() {
  local name=$1 tport=$2 pid=$3 cpu0 cpu1 out conns rate
  cpu0=$(cpu_s "$pid")
  out=$(openssl s_time -connect "127.0.0.1:$tport" -new -time "$seconds" 2>/dev/null)
  cpu1=$(cpu_s "$pid")
  conns=$(sed -n 's/^\([0-9]*\) connections in \([0-9.]*\)s.*/\1/p' <<<"$out" | head -1)
  rate=$(sed -n 's/.*; \([0-9.]*\) connections\/user sec.*/\1/p' <<<"$out" | head -1)
  awk -v c="$conns" -v w="$seconds" -v a="$cpu0" -v b="$cpu1" \
    'BEGIN { printf "%.0f %.3f %d\n", c / w, (c > 0 ? (b - a) * 1000 / c : 0), c }' >"$work/t2.$name"
  echo "$name: $(cat "$work/t2.$name") (per s, server ms CPU per handshake, handshakes); s_time: $rate conn/user s" >&2
}
echo "== (t2) full handshakes for ${seconds}s: kupool-server -tls_addr, then openssl s_server" >&2
start_server t2 -interval 30s -tls_addr 127.0.0.1:0 -tls_cert "$cert" -tls_key "$key"
s_time_run kupool "$tls_port" "$server_pid"
ok=$(metric 'kupool_tls_handshakes_total{result="ok"}')
failed=$(metric 'kupool_tls_handshakes_total{result="failed"}')
stop_server
s_port=$(( 20000 + RANDOM % 10000 ))
openssl s_server -accept "127.0.0.1:$s_port" -cert "$cert" -key "$key" -naccept 100000000 \
  -quiet >/dev/null 2>&1 </dev/null &
server_pid=$!
sleep 0.5
s_time_run s_server "$s_port" "$server_pid"
stop_server
read -r k_rate k_cpu k_n <"$work/t2.kupool"
read -r s_rate s_cpu s_n <"$work/t2.s_server"
echo "kupool_tls_handshakes_total ok=$ok failed=$failed (s_time made $k_n)" >&2

# ---- the document ------------------------------------------------------------------------------
section=$work/section.md
cat >"$section" <<EOF
<!-- tls:begin (bench/tls.sh rewrites this section) -->
## TLS (bench/tls.sh, $(date -u +%Y-%m-%d))

$(nproc) cores shared, loopback, memory backends, Release build; ECDSA P-256 test certificate
(tests/services/tls_certs.sh), TLS 1.3 as negotiated by kupool-client and \`openssl s_time\`.

### (t1) 10,000 idle authorized sessions, a job every 2 s (one server run per transport)

| | plain TCP (baseline) | TLS (-tls_addr) | TLS / TCP |
|---|---|---|---|
| sessions held | $tcp_n | $tls_n | |
| server RSS before / after | ${tcp_rss0} KiB / ${tcp_rss1} KiB | ${tls_rss0} KiB / ${tls_rss1} KiB | |
| **server memory per idle session** | **${tcp_per} bytes** | **${tls_per} bytes** (budget 16,384) | $(ratio "$tls_per" "$tcp_per") |
| broadcast spread mean / max | ${tcp_mean} ms / ${tcp_max} ms | ${tls_mean} ms / ${tls_max} ms | $(ratio "$tls_max" "$tcp_max") (max) |

### (t2) full handshakes, \`openssl s_time -new\` for ${seconds} s, one client process

| | openssl s_server (baseline) | kupool-server -tls_addr | kupool / s_server |
|---|---|---|---|
| handshakes per second | $s_rate | $k_rate | $(ratio "$k_rate" "$s_rate") |
| server CPU per handshake | ${s_cpu} ms | ${k_cpu} ms | $(ratio "$k_cpu" "$s_cpu") |

kupool-server counted \`kupool_tls_handshakes_total{result="ok"} $ok\`, \`{result="failed"} $failed\`
(s_time closes without close_notify, which is no failed handshake: the handshake was done).

Reading: an idle TLS session's server memory is OpenSSL's connection state with the record
buffers released (\`SSL_MODE_RELEASE_BUFFERS\`; tests/test_tls.c measures 10-12 KB of heap per
idle connection, 45 KB without the mode) plus heap that the handshakes' transient buffers left
fragmented during the ramp; the TCP session and its TLS conn struct are one allocation as before.
The spread is measured by the one load client, which decrypts every TLS session's job itself: it
is the client's cost as much as the server's (the server encrypts the job line per session, as it
frames it per WebSocket session). s_time drives one connection at a time and is itself the limit
of both handshake rates; server CPU per handshake is the comparable figure. The ramp for TLS is
250 connections/s (the client's own handshakes limit it, see bench/tls.sh).
<!-- tls:end -->
EOF
bench/doc_section.sh tls "$section"
cat "$section"
