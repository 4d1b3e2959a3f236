#!/usr/bin/env bash
# `make bench`: the release binaries (host architecture) under the harness's Lambda Runtime API,
# against a throwaway Postgres (and PgBouncer), a local Secrets Manager and a local JWKS
# issuer; writes bench/results.md (see e2e/src/bench.rs). BENCH_COLD_STARTS, BENCH_WARM_GETS and
# BENCH_WARM_POSTS scale the run; BENCH_BIN_DIR=<folder> measures the binaries
# in it instead (another build, for an A/B comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
cargo build --release --locked -p get-user -p create-user -p list-users -p health -p hello-world
cargo build --release --locked -p e2e --bin bench
target_dir=$(python3 -m devtools.paths target-dir)
pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/users-api-bench-XXXXXX")
trap 'scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
admin_url=$(scripts/postgres.sh start "$pg_dir" | sed -n 's/^DATABASE_URL=//p')
# PgBouncer, RDS Proxy's stand-in (the fleet and round-trip sections).
E2E_PGBOUNCER=$(scripts/pgbouncer.sh)
export E2E_PGBOUNCER
BENCH_HEADER="$(printf -- '- machine: %s, %s cores, %s\n- date: %s\n- commit: %s%s\n' \
  "$(uname -m)" "$(nproc)" "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)" \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$(git rev-parse --short HEAD)" \
  "$(git diff --quiet HEAD -- . ':!bench/results.md' || echo ' (with uncommitted changes)')")" \
BENCH_BIN_DIR="${BENCH_BIN_DIR:-$target_dir/release}" BENCH_DATABASE_URL="$admin_url" \
  "$target_dir/release/bench"
