#!/usr/bin/env bash
# `make bench`: cold-start benchmark of the release `health` binary (host architecture) against
# a throwaway Postgres and a local Secrets Manager. See bench/cold_start.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cargo build --release --locked -p health
pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/users-api-bench-XXXXXX")
trap 'scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
admin_url=$(scripts/postgres.sh start "$pg_dir" | sed -n 's/^DATABASE_URL=//p')
.venv/bin/python -m bench.cold_start "$(python3 -m devtools.paths target-dir)/release/health" "$admin_url"
