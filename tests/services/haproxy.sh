#!/usr/bin/env bash
# A throwaway HAProxy (Debian's haproxy) for the front-door tests: TCP mode, PROXY protocol v2 to
# every backend, loopback only.
#
#   tests/services/haproxy.sh start DIR FRONT_PORT BACKEND_PORT [BACKEND_PORT...]
#   tests/services/haproxy.sh stop DIR
#
# DIR holds the generated config (DIR/haproxy.cfg, the one docs/deployment.md shows), the pid file
# and the log. HAProxy listens on 127.0.0.1:FRONT_PORT and balances connections over the
# kupool-server nodes at 127.0.0.1:BACKEND_PORT..., sending each a PROXY v2 header
# (`send-proxy-v2`) with the client's address; health checks send one too (`check-send-proxy`:
# a LOCAL header), so a node needs no exception for them. `start` returns once the front port
# accepts connections; `stop` is idempotent. The same config passes TLS through untouched: point
# it at the nodes' -tls_addr ports and the header still comes first, in clear.
set -euo pipefail

die() { echo "haproxy.sh: $*" >&2; exit 1; }

[[ $# -ge 2 ]] || die "usage: haproxy.sh start DIR FRONT_PORT BACKEND_PORT... | stop DIR"
cmd=$1
dir=$2
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pidfile=$dir/haproxy.pid
cfg=$dir/haproxy.cfg
ready_timeout=15

command -v haproxy >/dev/null || die "no haproxy in PATH (run scripts/deps.sh --test)"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

do_start() {
  [[ $# -ge 2 ]] || die "start needs FRONT_PORT and at least one BACKEND_PORT"
  local front=$1
  shift
  running && die "already running in $dir (pid $(cat "$pidfile"))"
  port_open "$front" && die "port $front is already taken"
  {
    cat <<CFG
global
    # Two fds per proxied connection; stays under a 20,000 fd limit.
    maxconn 8000
    log stderr format short local0 info

defaults
    mode tcp
    log global
    option tcplog
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout check 1s

frontend miners
    bind 127.0.0.1:$front
    default_backend kupool

backend kupool
    balance leastconn
CFG
    local i=1
    for p in "$@"; do
      echo "    server node$i 127.0.0.1:$p send-proxy-v2 check check-send-proxy inter 300ms fall 1 rise 2"
      i=$((i + 1))
    done
  } >"$cfg"
  haproxy -c -q -f "$cfg" || die "config rejected (see $cfg)"
  haproxy -D -p "$pidfile" -f "$cfg" >>"$dir/haproxy.log" 2>&1 || die "haproxy did not start (see $dir/haproxy.log)"
  local deadline=$((SECONDS + ready_timeout))
  until port_open "$front"; do
    (( SECONDS < deadline )) || die "haproxy not accepting on 127.0.0.1:$front after ${ready_timeout}s"
    sleep 0.1
  done
}

do_stop() {
  running || { rm -f "$pidfile"; return 0; }
  local pid
  pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case $cmd in
  start) shift 2; do_start "$@" ;;
  stop) do_stop ;;
  *) die "unknown command \"$cmd\" (start|stop)" ;;
esac
