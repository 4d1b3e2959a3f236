#!/usr/bin/env bash
# Runs a command against a throwaway Postgres cluster, removed when it ends: the quick loop's
# database (`make test-quick`, `make e2e T=…`). The command sees the cluster's admin URL as
# DATABASE_URL (what `#[sqlx::test]` makes a fresh database per test from) and
# E2E_DATABASE_URL (the end-to-end harness's), and its log as E2E_POSTGRES_LOG.
#
#   scripts/with-postgres.sh COMMAND [ARG...]
set -euo pipefail
cd "$(dirname "$0")/.."

pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/users-api-quick-XXXXXX")
cleanup() {
  scripts/postgres.sh stop "$pg_dir" >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap cleanup EXIT
admin_url=$(scripts/postgres.sh start "$pg_dir" 2>/dev/null | sed -n 's/^DATABASE_URL=//p')
DATABASE_URL=$admin_url E2E_DATABASE_URL=$admin_url E2E_POSTGRES_LOG=$pg_dir/server.log "$@"
