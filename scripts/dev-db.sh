#!/usr/bin/env bash
# The dev database, in $DEV_DB_DIR (scripts/dev-env.sh):
#   scripts/dev-db.sh         start its cluster if needed, create `users_api`, apply migrations/
#                             with sqlx-cli (as `migrate` does in AWS), print its DATABASE_URL
#   scripts/dev-db.sh reset   stop the cluster and delete it
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/dev-env.sh

case "${1:-}" in
  reset)
    scripts/postgres.sh stop "$DEV_DB_DIR"
    rm -rf "$DEV_DB_DIR"
    ;;
  "")
    scripts/bootstrap.sh --sqlx-cli
    export PATH="$PWD/.tools/bin:$PATH"
    admin_url=$(scripts/postgres.sh start "$DEV_DB_DIR" | sed -n 's/^DATABASE_URL=//p')
    export DATABASE_URL="${admin_url%/postgres}/users_api"
    sqlx database create
    sqlx migrate run --source migrations >&2
    echo "$DATABASE_URL"
    ;;
  *)
    echo "usage: $0 [reset]" >&2
    exit 2
    ;;
esac
