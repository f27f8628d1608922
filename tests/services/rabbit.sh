#!/usr/bin/env bash
# A private RabbitMQ node for the test suite (Debian's rabbitmq-server), never the system one.
#
#   tests/services/rabbit.sh start|stop|restart|status DIR PORT
#
# The node is kupool_test_<PORT>@localhost, listens for AMQP on 127.0.0.1:PORT, keeps its data,
# logs, config and Erlang cookie under DIR, and runs no plugins. guest/guest works on loopback.
# `restart` keeps the data, so durable queues and persistent messages survive it. `stop` stops
# this node only: epmd may be shared with other Erlang nodes, so it is left running.
#
# Exit status: 0 on success; 1 when the node could not be started or stopped (the tail of its
# log is printed); `status` exits 0 when the node answers, 1 otherwise.
set -euo pipefail

usage() { echo "usage: $0 start|stop|restart|status DIR PORT" >&2; exit 2; }
[[ $# -eq 3 ]] || usage
cmd=$1
dir=$2
port=$3
[[ "$port" =~ ^[0-9]+$ ]] && (( port > 0 && port < 65536 )) || usage

rabbit_bin=/usr/lib/rabbitmq/bin
if [[ ! -x "$rabbit_bin/rabbitmq-server" ]]; then
  echo "rabbit.sh: rabbitmq-server is not installed (scripts/deps.sh --test installs it)" >&2
  exit 1
fi

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
node="kupool_test_${port}@localhost"
# Erlang distribution port: PORT+1000 (25672 -> 26672). Keep both below 32768: a port inside the
# kernel's ephemeral range (ip_local_port_range, 32768-60999) can be taken at random by an
# outgoing connection, and the listener then fails to bind.
dist_port=$(( port + 1000 ))
start_timeout=60
stop_timeout=30

# Everything the node and rabbitmqctl read comes from DIR. HOME=DIR gives both the same
# Erlang cookie (a random one made on the first start), and keeps them off the system node's.
export HOME="$dir"
export RABBITMQ_NODENAME="$node"
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT="$port"
export RABBITMQ_DIST_PORT="$dist_port"
export RABBITMQ_MNESIA_BASE="$dir/mnesia"
export RABBITMQ_LOG_BASE="$dir/log"
export RABBITMQ_LOGS="$dir/log/rabbit.log"
export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
export RABBITMQ_PLUGINS_EXPAND_DIR="$dir/plugins-expand"
export RABBITMQ_PID_FILE="$dir/rabbit.pid"
# The distribution listener (node and CLI) on loopback only: the cookie is the only guard.
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
unset RABBITMQ_ALLOW_INPUT NOTIFY_SOCKET

ctl() { "$rabbit_bin/rabbitmqctl" -n "$node" "$@"; }

write_files() {
  mkdir -p "$dir/mnesia" "$dir/log" "$dir/plugins-expand"
  if [[ ! -s "$dir/.erlang.cookie" ]]; then
    (umask 077; od -An -N20 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F' >"$dir/.erlang.cookie")
  fi
  chmod 400 "$dir/.erlang.cookie"
  : >"$dir/rabbitmq-env.conf"
  echo "[]." >"$dir/enabled_plugins"
  echo "[]." >"$dir/advanced.config"
  cat >"$dir/rabbitmq.conf" <<EOF
# written by tests/services/rabbit.sh
loopback_users.guest = true
# A test machine's disk may be small: never block publishers on the free-space alarm.
disk_free_limit.absolute = 1MB
log.file.level = info
log.console = false
EOF
}

# The OS pids of this node's Erlang VM: the pid file, and any VM started with this exact node
# name (a leftover of a run whose DIR is gone). Only this node's processes are ever listed.
node_pids() {
  local pids=() p
  if [[ -s "$RABBITMQ_PID_FILE" ]]; then
    p=$(tr -dc '0-9' <"$RABBITMQ_PID_FILE")
    [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null && pids+=("$p")
  fi
  for f in /proc/[0-9]*/cmdline; do
    p=${f#/proc/}; p=${p%/cmdline}
    if tr '\0' '\n' 2>/dev/null <"$f" | grep -qxF -- "$node"; then
      [[ " ${pids[*]-} " == *" $p "* ]] || pids+=("$p")
    fi
  done
  [[ ${#pids[@]} -gt 0 ]] && echo "${pids[@]}"
  return 0
}

alive() { [[ -n "$(node_pids)" ]]; }

status() { ctl -q status >/dev/null 2>&1; }

log_tail() {
  echo "--- $dir/log/startup.log" >&2
  tail -n 30 "$dir/log/startup.log" 2>/dev/null >&2 || true
  echo "--- $RABBITMQ_LOGS" >&2
  tail -n 30 "$RABBITMQ_LOGS" 2>/dev/null >&2 || true
}

# Waits until none of `pids` is alive, up to $2 seconds. Returns 1 on timeout.
wait_gone() {
  local pids=$1 deadline=$(( SECONDS + $2 )) p any
  while (( SECONDS < deadline )); do
    any=0
    for p in $pids; do kill -0 "$p" 2>/dev/null && any=1; done
    (( any == 0 )) && return 0
    sleep 0.2
  done
  return 1
}

do_stop() {
  local pids
  pids=$(node_pids)
  [[ -z "$pids" ]] && { rm -f "$RABBITMQ_PID_FILE"; return 0; }
  # A clean stop first: it syncs the message store, so persistent messages survive a restart.
  ctl -q stop >/dev/null 2>&1 || true
  if ! wait_gone "$pids" "$stop_timeout"; then
    echo "rabbit.sh: $node did not stop within ${stop_timeout}s; killing pids $pids" >&2
    kill -TERM $pids 2>/dev/null || true
    if ! wait_gone "$pids" 10; then
      kill -KILL $pids 2>/dev/null || true
      wait_gone "$pids" 5 || { echo "rabbit.sh: cannot kill $node ($pids)" >&2; return 1; }
    fi
  fi
  # The launcher shell that waited on the VM exits with it.
  if [[ -s "$dir/launcher.pid" ]]; then
    local lp
    lp=$(tr -dc '0-9' <"$dir/launcher.pid")
    [[ -n "$lp" ]] && wait_gone "$lp" 5 || true
    rm -f "$dir/launcher.pid"
  fi
  rm -f "$RABBITMQ_PID_FILE"
  return 0
}

do_start() {
  if status; then
    return 0 # already running: starting is idempotent
  fi
  # A VM with this name that does not answer (a crashed or foreign-cookie leftover) would keep
  # the port and the name: stop it first.
  if alive; then
    echo "rabbit.sh: stopping a leftover $node" >&2
    do_stop || return 1
  fi
  write_files
  # The launcher script stays in the foreground of its own session and forwards SIGTERM to the
  # VM; its stdin is closed so nothing reads the terminal.
  setsid "$rabbit_bin/rabbitmq-server" </dev/null >"$dir/log/startup.log" 2>&1 &
  echo $! >"$dir/launcher.pid"
  local launcher=$! deadline=$(( SECONDS + start_timeout ))
  while (( SECONDS < deadline )); do
    if ! kill -0 "$launcher" 2>/dev/null; then
      echo "rabbit.sh: $node exited during startup" >&2
      log_tail
      return 1
    fi
    local left=$(( deadline - SECONDS ))
    (( left < 1 )) && left=1
    if ctl -q await_startup --timeout "$left" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  echo "rabbit.sh: $node did not start within ${start_timeout}s" >&2
  log_tail
  do_stop || true
  return 1
}

# One more try when the first start fails: seen once here, a VM that exited at once with an
# empty startup log while another node on the machine was stopping.
start_with_retry() {
  do_start && return 0
  echo "rabbit.sh: retrying the start of $node once" >&2
  do_stop || true
  sleep 1
  do_start
}

case "$cmd" in
  start) start_with_retry ;;
  stop) do_stop ;;
  restart) do_stop && start_with_retry ;;
  status) status || exit 1 ;;
  *) usage ;;
esac
