#!/usr/bin/env bash
# The dev database: starts the dev cluster in $DEV_DB_DIR if needed, creates `users_api` and
# applies migrations/. Prints its DATABASE_URL on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PATH"
: "${DEV_DB_DIR:?DEV_DB_DIR is not set}"

admin_url=$(scripts/postgres.sh start "$DEV_DB_DIR" | sed -n 's/^DATABASE_URL=//p')
export DATABASE_URL="${admin_url%/postgres}/users_api"
sqlx database create
sqlx migrate run --source migrations >&2
echo "$DATABASE_URL"
