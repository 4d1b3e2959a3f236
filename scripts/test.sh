#!/usr/bin/env bash
# Every check and test, from nothing: tools, formatting, lints, the SQLx offline data, then unit,
# integration (a fresh database per test) and end-to-end tests (the real binaries under
# `cargo lambda watch`), all against a throwaway Postgres cluster removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PWD/.tools/bin:$PATH"

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

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

step "SQLx offline data is current (cargo sqlx prepare --check)"
DATABASE_URL="${admin_url%/postgres}/prepare_check" sqlx database create
DATABASE_URL="${admin_url%/postgres}/prepare_check" sqlx migrate run --source migrations
DATABASE_URL="${admin_url%/postgres}/prepare_check" cargo sqlx prepare --workspace --check -- --all-targets

step "build the function binaries (the end-to-end tests run them)"
# Package by package, as `cargo lambda watch` builds them, so the watcher finds them fresh.
functions=()
for dir in functions/*/; do functions+=(-p "$(basename "$dir")"); done
cargo build --locked "${functions[@]}"

step "SAM template: cfn-lint, sam validate --lint"
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
cfn-lint template.yaml
sam validate --lint

step "sam build (release arm64 binaries, cross-compiled with zig)"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
sam_build_dir="$target_dir/sam-build"
sam build --build-dir "$sam_build_dir"

step "template tests"
SAM_BUILD_DIR="$sam_build_dir" pytest -q tests

step "tests"
# `#[sqlx::test]` creates a fresh database per test through DATABASE_URL; the end-to-end
# harness creates one per stack through E2E_DATABASE_URL.
# Library and integration-test targets only: building the function binaries as part of the
# whole workspace would unify features differently from the build above and make the
# watcher rebuild them.
DATABASE_URL="$admin_url" E2E_DATABASE_URL="$admin_url" \
  cargo test --workspace --lib --test '*' --locked --no-fail-fast
