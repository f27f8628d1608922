#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests labelled `pg`: real server, loopback only.
#
#   tests/services/pg.sh start|stop|restart|status DIR PORT
#
# DIR holds the cluster (DIR/data), its log (DIR/postgres.log) and its unix socket; the server
# listens on 127.0.0.1:PORT only, trusts local and loopback connections, runs with fsync off, and
# has a database `kupool_test`. `start` is idempotent and returns once the server accepts
# connections; `stop` is idempotent too. Uses the newest Debian postgresql in
# /usr/lib/postgresql/*/bin (scripts/deps.sh --test installs it). PostgreSQL refuses to run as
# root, so as root everything runs as the `postgres` user and DIR is handed to it.
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

[[ $# -eq 3 ]] || die "usage: pg.sh start|stop|restart|status DIR PORT"
cmd=$1
dir=$2
port=$3
[[ $port =~ ^[0-9]+$ ]] || die "PORT must be a number, got \"$port\""
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
data=$dir/data
logfile=$dir/postgres.log
db=kupool_test
ready_timeout=30

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[[ -n $bin && -x $bin/pg_ctl ]] ||
  die "no PostgreSQL server in /usr/lib/postgresql/*/bin (run scripts/deps.sh --test)"

# A unix socket path is limited to about 107 bytes; a deep build directory gets one in /tmp.
sockdir=$dir
if (( ${#dir} > 80 )); then
  sockdir=/tmp/kupool-pg-$port
  mkdir -p "$sockdir"
fi

run_as=()
if [[ $(id -u) -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || die "running as root needs the postgres user (package postgresql)"
  run_as=(runuser -u postgres --)
fi

# Runs a PostgreSQL tool as the cluster's owner, from a directory that owner can read.
as_pg() { (cd / && "${run_as[@]}" "$@"); }

give_to_owner() {
  [[ ${#run_as[@]} -eq 0 ]] && return 0
  chown postgres: "$dir" "$sockdir"
  # Every parent must be searchable by postgres, or it cannot reach DIR.
  as_pg test -x "$dir" || die "user postgres cannot reach $dir (a parent directory is not searchable)"
}

running() { as_pg "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1; }

ready() { "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres -t 2 >/dev/null 2>&1; }

wait_ready() {
  local deadline=$((SECONDS + ready_timeout))
  until ready; do
    (( SECONDS < deadline )) || die "server in $dir not ready on 127.0.0.1:$port after ${ready_timeout}s (see $logfile)"
    sleep 0.1
  done
}

psql_q() {
  as_pg "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$sockdir" -p "$port" -U postgres -d postgres -tAc "$1"
}

do_init() {
  [[ -f $data/PG_VERSION ]] && return 0
  rm -rf "$data"
  as_pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 ||
    die "initdb failed (see $dir/initdb.log)"
}

do_start() {
  give_to_owner
  do_init
  if ! running; then
    # Someone else on our port would make us test against the wrong server.
    if ready; then
      die "port $port is already served by another PostgreSQL (a leftover test server? stop it with pg.sh stop ITS_DIR $port)"
    fi
    local opts="-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$sockdir'"
    opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    opts+=" -c max_connections=50 -c shared_buffers=32MB"
    as_pg "$bin/pg_ctl" start -D "$data" -l "$logfile" -w -t "$ready_timeout" -o "$opts" >/dev/null 2>&1 ||
      die "server in $dir did not start on 127.0.0.1:$port (see $logfile)"
  fi
  wait_ready
  if [[ $(psql_q "SELECT 1 FROM pg_database WHERE datname = '$db'") != 1 ]]; then
    psql_q "CREATE DATABASE $db" >/dev/null || die "cannot create database $db"
  fi
}

do_stop() {
  [[ -f $data/PG_VERSION ]] || return 0
  running || return 0
  as_pg "$bin/pg_ctl" stop -D "$data" -m fast -w -t "$ready_timeout" >/dev/null 2>&1 ||
    die "server in $dir did not stop (see $logfile)"
}

case $cmd in
  start) do_start ;;
  stop) do_stop ;;
  restart) do_stop; do_start ;;
  status)
    if [[ -f $data/PG_VERSION ]] && running && ready; then
      echo "pg.sh: running in $dir on 127.0.0.1:$port"
    else
      echo "pg.sh: not running ($dir, port $port)"
      exit 3
    fi
    ;;
  *) die "unknown command \"$cmd\" (start|stop|restart|status)" ;;
esac
