#!/usr/bin/env bash
# Every check and test, from nothing (what CI runs): tools, formatting, lints, the SQLx offline
# data, the SAM template (and an arm64 `sam build`), then unit, integration (a fresh database
# per test) and end-to-end tests (the real binaries under `cargo lambda watch`), all against a
# throwaway Postgres cluster removed at the end. Each step prints the seconds elapsed.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s [%ds]\n' "$*" "$SECONDS" >&2; }

step "tools (.venv), in the background"
scripts/bootstrap.sh --lint &
bootstrap=$!

step "cargo fetch: every platform's crates in Cargo.lock"
# The build downloads only this platform's crates; `cargo deny --offline` runs `cargo metadata`,
# which wants them all (windows-sys, android_system_properties...). A warm registry hid this.
cargo fetch --locked

step "cargo fmt --check"
cargo fmt --all -- --check

step "the template's and the watch router's generated parts follow the route declarations"
python3 -m devtools.template --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Postgres"
pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/users-api-test-XXXXXX")
cleanup() {
  scripts/postgres.sh stop "$pg_dir" || true
  rm -rf "$pg_dir"
}
trap cleanup EXIT
admin_url=$(scripts/postgres.sh start "$pg_dir" | sed -n 's/^DATABASE_URL=//p')
# The server's log, which a test reads (no password may reach it).
export E2E_POSTGRES_LOG="$pg_dir/server.log"

step "SQLx offline data is current (.sqlx/ against the migrated schema)"
scripts/postgres.sh psql "$pg_dir" -c 'CREATE DATABASE prepare_check'
for migration in migrations/*.sql; do
  scripts/postgres.sh psql "$pg_dir" -d prepare_check --single-transaction -f "$migration"
done
DATABASE_URL="${admin_url%/postgres}/prepare_check" python3 -m devtools.sqlx_prepare_check

step "build the function binaries and the tests (the end-to-end tests run the binaries)"
# One feature set for every package (see tokio in Cargo.toml), so these builds, the tests'
# and the one `cargo lambda watch` makes share every dependency's artifacts.
cargo build --locked --workspace --bins
cargo test --locked --workspace --lib --test '*' --no-run

wait "$bootstrap"
export PATH="$PWD/.venv/bin:$PATH"

step "SAM template: cfn-lint, sam validate --lint"
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
cfn-lint template.yaml
sam validate --lint

step "checkov: the template in each shape an operator deploys (devtools/checkov.py)"
python3 -m devtools.checkov

step "GitHub workflows (check-jsonschema, zizmor) and the dependency graph (cargo deny, offline)"
.tools/lint/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
.tools/lint/bin/zizmor --offline --persona pedantic .github/workflows/
.tools/bin/cargo-deny --locked --offline check licenses bans sources

step "sam build: every function for arm64 (debug profile: proves the build, not the speed)"
# `make build` and `make deploy` build the release profile; here the point is that the
# template's functions cross-compile for Graviton, which the debug profile proves in a third
# of the time.
sam_build_dir="$(python3 -m devtools.paths target-dir)/sam-build"
SAM_BUILD_MODE=debug sam build --build-dir "$sam_build_dir"

step "template and source rules (pytest)"
SAM_BUILD_DIR="$sam_build_dir" python3 -m pytest -q tests

step "libfaketime, PgBouncer and Chromium (Debian's, installed when missing)"
# The IAM authentication test freezes a function's clock with libfaketime; PgBouncer stands in
# for RDS Proxy (e2e/tests/rds_proxy.rs); Chromium is the browser of e2e/tests/browser.rs.
E2E_LIBFAKETIME=$(scripts/libfaketime.sh)
E2E_PGBOUNCER=$(scripts/pgbouncer.sh)
E2E_CHROMIUM=$(scripts/chromium.sh)
export E2E_LIBFAKETIME E2E_PGBOUNCER E2E_CHROMIUM

step "unit, integration and end-to-end tests"
# `#[sqlx::test]` creates a fresh database per test through DATABASE_URL; the end-to-end
# harness creates one per stack through E2E_DATABASE_URL. The runner runs the test binaries
# `cargo test` would, every one of them, the end-to-end ones two at a time where no assertion
# involves time (devtools/run_tests.py).
DATABASE_URL="$admin_url" E2E_DATABASE_URL="$admin_url" python3 -m devtools.run_tests --locked

step "make test passed"
