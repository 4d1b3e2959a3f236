#!/usr/bin/env bash
# A throwaway Postgres cluster from the system's binaries, never the system service.
#
#   scripts/postgres.sh start DIR   init (first time) and start a cluster in DIR, on $DB_PORT or
#                                   the port it had before or a free one; prints DATABASE_URL=...
#   scripts/postgres.sh standby DIR PRIMARY_DIR   a streaming replica of the cluster running in
#                                   PRIMARY_DIR (pg_basebackup, then a hot standby following it
#                                   with primary_conninfo), started as `start` starts a cluster:
#                                   the read replica's stand-in (e2e/src/replica.rs)
#   scripts/postgres.sh stop DIR    stop it (fast shutdown)
#   scripts/postgres.sh status DIR  exit 0 when a cluster is running in DIR
#   scripts/postgres.sh psql DIR [ARG...]   psql on the running cluster, as its admin
#
# Password (SCRAM) authentication, loopback only. With PG_SSL_CERT and PG_SSL_KEY (PEM files) the
# cluster also serves TLS with that certificate (the TLS tests make their own CA); PG_OPTIONS
# adds server settings (`-c name=value ...`: the bench's pg_stat_statements). Postgres
# refuses to run as root, so under root
# the cluster belongs to the `postgres` user (or `nobody`). Installs Debian's `postgresql` when
# no server binaries are found.
set -euo pipefail
. "$(dirname "$0")/apt.sh"

DB_USER=${DB_USER:-users_api}
DB_PASSWORD=${DB_PASSWORD:-users_api}

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return
  fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && echo "$dir"
}

ensure_binaries() {
  BINDIR=$(find_bindir || true)
  if [ -z "$BINDIR" ]; then
    log "no Postgres server binaries found; installing Debian's postgresql"
    # Only its binaries are used: this script never touches the package's system cluster.
    apt_install postgresql
    BINDIR=$(find_bindir)
  fi
}

# Run a Postgres binary as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$OWNER" -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_is_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

setup_owner() {
  OWNER=$(id -un)
  if [ "$(id -u)" -eq 0 ]; then
    if id postgres >/dev/null 2>&1; then OWNER=postgres; else OWNER=nobody; fi
  fi
}

is_running() { as_owner "$BINDIR/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; }

url() { echo "postgres://$DB_USER:$DB_PASSWORD@127.0.0.1:$(cat "$DIR/port")/postgres"; }

# The binaries, the owner, and DIR for the owner's cluster.
prepare() {
  ensure_binaries
  setup_owner
  mkdir -p "$DIR"
  [ "$(id -u)" -ne 0 ] || chown "$OWNER" "$DIR"
}

start() {
  prepare
  if [ ! -f "$DIR/data/PG_VERSION" ]; then
    local pwfile="$DIR/pwfile"
    printf '%s\n' "$DB_PASSWORD" >"$pwfile"
    [ "$(id -u)" -ne 0 ] || chown "$OWNER" "$pwfile"
    as_owner "$BINDIR/initdb" -D "$DIR/data" --username="$DB_USER" --pwfile="$pwfile" \
      --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 ||
      { cat "$DIR/initdb.log" >&2; exit 1; }
    rm -f "$pwfile"
  fi
  if is_running; then
    log "already running on port $(cat "$DIR/port")"
  else
    local port=${DB_PORT:-}
    if [ -z "$port" ] && [ -f "$DIR/port" ] && port_is_free "$(cat "$DIR/port")"; then
      port=$(cat "$DIR/port")
    fi
    [ -n "$port" ] || port=$(free_port)
    echo "$port" >"$DIR/port"
    local ssl=""
    if [ -n "${PG_SSL_CERT:-}" ]; then
      # The server reads its key only if no one else can.
      install -m 600 -o "$OWNER" "$PG_SSL_CERT" "$DIR/server.crt"
      install -m 600 -o "$OWNER" "${PG_SSL_KEY:?PG_SSL_KEY is not set}" "$DIR/server.key"
      ssl="-c ssl=on -c ssl_cert_file=$DIR/server.crt -c ssl_key_file=$DIR/server.key"
    fi
    # fsync off: a throwaway cluster needs speed, not durability.
    as_owner "$BINDIR/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$DIR/data' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 $ssl ${PG_OPTIONS:-}" \
      >/dev/null || { tail -n 20 "$DIR/server.log" >&2; exit 1; }
    log "started Postgres $("$BINDIR/postgres" --version | awk '{print $3}') in $DIR on port $port"
  fi
  echo "DATABASE_URL=$(url)"
}

standby() {
  prepare
  if [ ! -f "$DIR/data/PG_VERSION" ]; then
    # -R writes standby.signal and primary_conninfo (with these credentials); -X stream copies
    # the WAL written meanwhile; -c fast starts at once with a checkpoint.
    as_owner "$BINDIR/pg_basebackup" -D "$DIR/data" -R -X stream -c fast \
      -d "host=127.0.0.1 port=$(cat "$PRIMARY/port") user=$DB_USER password=$DB_PASSWORD" \
      >"$DIR/basebackup.log" 2>&1 || { cat "$DIR/basebackup.log" >&2; exit 1; }
  fi
  start
}

status() {
  BINDIR=$(find_bindir || true)
  [ -n "$BINDIR" ] && [ -f "$DIR/data/PG_VERSION" ] || return 1
  setup_owner
  is_running
}

stop() {
  ensure_binaries
  setup_owner
  if [ -f "$DIR/data/PG_VERSION" ] && is_running; then
    as_owner "$BINDIR/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
    log "stopped Postgres in $DIR"
  fi
}

# The server's own psql, whichever client is on PATH.
run_psql() {
  ensure_binaries
  PGPASSWORD=$DB_PASSWORD "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 \
    -p "$(cat "$DIR/port")" -U "$DB_USER" -d postgres "$@"
}

usage() { echo "usage: $0 start|stop|status DIR, $0 standby DIR PRIMARY_DIR, or $0 psql DIR [ARG...]" >&2; exit 2; }
cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || usage
DIR=$(mkdir -p "$DIR" && cd "$DIR" && pwd)
case "$cmd" in
  start) start ;;
  standby) PRIMARY=$(cd "${3:?usage: standby DIR PRIMARY_DIR}" && pwd); standby ;;
  stop) stop ;;
  status) status ;;
  psql) shift 2; run_psql "$@" ;;
  *) usage ;;
esac
