#!/usr/bin/env bash
# Prints the path of Debian's pgbouncer binary, installing the package when it is missing. The
# end-to-end tests put it in front of the test Postgres as the local stand-in for RDS Proxy; the
# harness writes its configuration and starts and stops it per test, like Postgres, never the
# system service.
set -euo pipefail
. "$(dirname "$0")/apt.sh"

find_bin() { command -v pgbouncer || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; } || true; }

bin=$(find_bin)
if [ -z "$bin" ]; then
  echo "pgbouncer.sh: installing Debian's pgbouncer" >&2
  # Only the binary is used: the tests never talk to the package's system service.
  apt_install pgbouncer
  bin=$(find_bin)
fi
[ -n "$bin" ] || { echo "pgbouncer.sh: pgbouncer not found" >&2; exit 1; }
echo "$bin"
