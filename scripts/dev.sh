#!/usr/bin/env bash
# The local API: a throwaway Postgres, migrations, then every function behind
# `cargo lambda watch`, reloading on code changes, and in front of it on
# http://localhost:${PORT:-9000} the gateway template.yaml declares (see `serve` below).
# Ctrl-C stops everything this script started. Data persists between runs in $DEV_DB_DIR;
# `make dev-reset` removes it.
#
# DEV_SECRETS=1 (`make dev-secrets`) runs the production path instead: a local Secrets Manager
# (moto) on loopback holds the credentials as RDS writes them, and the functions get
# DB_SECRET_ID and AWS_ENDPOINT_URL, not DATABASE_URL.
#
# DEV_AWS=1 (`make dev-aws`) starts no database: the functions read DB_SECRET_ID from the real
# Secrets Manager with the AWS credentials of the environment or AWS_PROFILE (aws-config), and
# connect where the secret (or DB_HOST, DB_PORT) says.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --sqlx-cli
export PATH="$PWD/.venv/bin:$PWD/.tools/bin:$PATH"
source scripts/dev-env.sh

PORT=${PORT:-9000}
# The users routes need a token: the local stack verifies HS256 tokens made with a
# development-only key (`make token` prints one). Set JWT_KEY, JWT_JWKS_URL or JWT_SECRET_ID to
# use your own.
if [ -z "${JWT_KEY:-}${JWT_JWKS_URL:-}${JWT_SECRET_ID:-}" ]; then
  JWT_KEY=$(python3 -m devtools.dev_token key)
  export JWT_KEY
fi
# Tokens must be bound to this API: by audience, or by app client ids.
if [ -z "${JWT_AUDIENCE:-}${JWT_CLIENT_IDS:-}" ]; then
  JWT_AUDIENCE=$(python3 -m devtools.dev_token audience)
  export JWT_AUDIENCE
fi

if ! python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', $PORT))" 2>/dev/null; then
  echo "dev: port $PORT is in use (is \`make dev\` already running?); set PORT=... to use another" >&2
  exit 1
fi

# The API on $PORT is the gateway template.yaml declares (e2e/src/bin/gateway.rs: its routes,
# CORS from CORS_ALLOWED_ORIGINS, throttles, access log), in front of `cargo lambda watch`'s
# Invoke API on a port of its own, which builds and runs the functions (reloading on changes).
gateway_pid=""
stop_gateway() { if [ -n "$gateway_pid" ]; then kill "$gateway_pid" 2>/dev/null || true; fi; }
serve() {
  local watch_port target_dir
  watch_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  target_dir=$(python3 -m devtools.paths target-dir)
  cargo build --quiet -p e2e --bin gateway
  GATEWAY_PORT=$PORT WATCH_URL="http://127.0.0.1:$watch_port" "$target_dir/debug/gateway" &
  gateway_pid=$!
  # The gateway listens before the watcher starts, or dev stops with its error above.
  until python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null; do
    if ! kill -0 "$gateway_pid" 2>/dev/null; then
      echo "dev: the gateway did not start (see above)" >&2
      exit 1
    fi
    sleep 0.2
  done
  cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$watch_port"
}

if [ "${DEV_AWS:-0}" = 1 ]; then
  if [ -z "${DB_SECRET_ID:-}" ]; then
    echo "dev-aws: set DB_SECRET_ID (and AWS_PROFILE, or credentials in the environment)" >&2
    exit 2
  fi
  echo "dev: database credentials: secret $DB_SECRET_ID, read with ${AWS_PROFILE:+profile $AWS_PROFILE's}${AWS_PROFILE:-the environment's} AWS credentials" >&2
  trap stop_gateway EXIT
  serve
  exit
fi

started_postgres=true
if scripts/postgres.sh status "$DEV_DB_DIR"; then started_postgres=false; fi
cleanup() {
  stop_gateway
  if $started_postgres; then scripts/postgres.sh stop "$DEV_DB_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DATABASE_URL=$(scripts/dev-db.sh)
export DATABASE_URL
database_line="database: $DATABASE_URL"

if [ "${DEV_SECRETS:-0}" = 1 ]; then
  moto_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  .venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$DEV_DB_DIR/moto.log" 2>&1 &
  moto_pid=$!
  trap 'kill $moto_pid 2>/dev/null; cleanup' EXIT
  export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev AWS_EC2_METADATA_DISABLED=true
  export DB_SECRET_ID=users-api/dev/database DB_SSLMODE=disable
  .venv/bin/python -m devtools.moto_secret "$DB_SECRET_ID" "$DATABASE_URL"
  unset DATABASE_URL
  database_line="database credentials: secret $DB_SECRET_ID in Secrets Manager at $AWS_ENDPOINT_URL (moto)"
fi

cat >&2 <<MSG

dev: the API is starting on http://localhost:$PORT (functions build on first use)
dev:   curl localhost:$PORT/health
dev:   TOKEN=\$(make -s token)
dev:   curl -X POST localhost:$PORT/users -H "authorization: Bearer \$TOKEN" -H 'content-type: application/json' -d '{"email":"ada@example.com","name":"Ada"}'
dev:   curl localhost:$PORT/users/1 -H "authorization: Bearer \$TOKEN"
dev: $database_line
dev: Ctrl-C stops the API and the database.

MSG
serve
