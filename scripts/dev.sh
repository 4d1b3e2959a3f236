#!/usr/bin/env bash
# The local API: a throwaway Postgres, migrations, then every function behind
# `cargo lambda watch` on http://localhost:${PORT:-9000}, reloading on code changes.
# Ctrl-C stops everything this script started. Data persists between runs in $DEV_DB_DIR;
# `make dev-reset` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PWD/.tools/bin:$PATH"

PORT=${PORT:-9000}
DEV_DB_DIR=${DEV_DB_DIR:-${TMPDIR:-/tmp}/users-api-dev-$(pwd | cksum | cut -d' ' -f1)}
export DEV_DB_DIR

if ! python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', $PORT))" 2>/dev/null; then
  echo "dev: port $PORT is in use (is \`make dev\` already running?); set PORT=... to use another" >&2
  exit 1
fi

started_postgres=true
if scripts/postgres.sh status "$DEV_DB_DIR"; then started_postgres=false; fi
cleanup() {
  if $started_postgres; then scripts/postgres.sh stop "$DEV_DB_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DATABASE_URL=$(DEV_DB_DIR="$DEV_DB_DIR" scripts/dev-db.sh)
export DATABASE_URL

cat >&2 <<MSG

dev: the API is starting on http://localhost:$PORT (functions build on first use)
dev:   curl localhost:$PORT/health
dev:   curl -X POST localhost:$PORT/users -H 'content-type: application/json' -d '{"email":"ada@example.com","name":"Ada"}'
dev:   curl localhost:$PORT/users/1
dev: database: $DATABASE_URL
dev: Ctrl-C stops the API and the database.

MSG
cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$PORT"
