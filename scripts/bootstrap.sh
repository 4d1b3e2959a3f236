#!/usr/bin/env bash
# Installs the project's tools, idempotently, inside the project:
#   .venv/   Python virtualenv with cargo-lambda (PyPI; it brings zig for cross-compiling) and
#            moto (a local Secrets Manager, for the tests and `make dev-secrets`)
#   .tools/  sqlx-cli, built by cargo
# Print nothing when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LAMBDA_VERSION=1.9.2
MOTO_VERSION=5.2.5
SQLX_CLI_VERSION=0.8.6

if [ ! -x .venv/bin/cargo-lambda ] ||
  [ "$(.venv/bin/cargo-lambda lambda --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LAMBDA_VERSION" ]; then
  echo "bootstrap: installing cargo-lambda $CARGO_LAMBDA_VERSION into .venv" >&2
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi

if [ ! -x .venv/bin/moto_server ] ||
  [ "$(.venv/bin/python -c 'import moto; print(moto.__version__)' 2>/dev/null)" != "$MOTO_VERSION" ]; then
  echo "bootstrap: installing moto[server] $MOTO_VERSION into .venv" >&2
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

if [ ! -x .tools/bin/sqlx ] || [ "$(.tools/bin/sqlx --version 2>/dev/null | awk '{print $2}')" != "$SQLX_CLI_VERSION" ]; then
  echo "bootstrap: building sqlx-cli $SQLX_CLI_VERSION into .tools (a few minutes, once)" >&2
  cargo install --quiet --locked --root .tools sqlx-cli --version "$SQLX_CLI_VERSION" \
    --no-default-features --features rustls,postgres
fi
