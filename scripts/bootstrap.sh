#!/usr/bin/env bash
# Installs the project's tools, idempotently, inside the project:
#   .venv/   Python virtualenv with cargo-lambda (PyPI; it brings zig for cross-compiling),
#            moto (a local Secrets Manager, for the tests and `make dev-secrets`), the SAM CLI
#            and cfn-lint (template checks, `sam build`), pytest (the template tests),
#            openapi-spec-validator and Schemathesis (openapi.yaml, and the contract test)
#   .tools/lint/  with --lint (make test): a virtualenv of its own, since their pinned dependencies (boto3, click)
#            differ from the SAM CLI's: checkov (the template's security checks), check-jsonschema
#            and zizmor (the GitHub workflows)
#   .tools/bin/cargo-deny  with --lint: built by cargo (a few minutes, once): licenses, bans,
#            sources
#   .tools/  with --sqlx-cli: sqlx-cli, built by cargo (minutes, once), for the dev database
#            and `make prepare`; `make test` does not need it
# Print nothing when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LAMBDA_VERSION=1.9.2
MOTO_VERSION=5.2.5
SAM_CLI_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0
PYTEST_VERSION=9.2.0
OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0
SCHEMATHESIS_VERSION=4.32.5
SQLX_CLI_VERSION=0.8.6
CHECKOV_VERSION=3.3.30
CHECK_JSONSCHEMA_VERSION=0.39.0
ZIZMOR_VERSION=1.32.0
CARGO_DENY_VERSION=0.20.2

if [ ! -x .venv/bin/cargo-lambda ] ||
  [ "$(.venv/bin/cargo-lambda lambda --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LAMBDA_VERSION" ]; then
  echo "bootstrap: installing cargo-lambda $CARGO_LAMBDA_VERSION into .venv" >&2
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi

# One pip call for the Python tools, run only when a pinned version is missing.
python_tools=("moto[server]==$MOTO_VERSION" "aws-sam-cli==$SAM_CLI_VERSION" "cfn-lint==$CFN_LINT_VERSION" "pytest==$PYTEST_VERSION"
  "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION" "schemathesis==$SCHEMATHESIS_VERSION")
if ! .venv/bin/python - "${python_tools[@]}" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, wanted = spec.split("==")
    if version(name.split("[")[0]) != wanted:
        sys.exit(1)
PY
then
  echo "bootstrap: installing ${python_tools[*]} into .venv" >&2
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "${python_tools[@]}"
fi

want() { case " $ARGS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
ARGS="$*"

lint_tools=("checkov==$CHECKOV_VERSION" "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" "zizmor==$ZIZMOR_VERSION")
if want --lint && ! .tools/lint/bin/python - "${lint_tools[@]}" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, wanted = spec.split("==")
    if version(name) != wanted:
        sys.exit(1)
PY
then
  echo "bootstrap: installing ${lint_tools[*]} into .tools/lint" >&2
  [ -x .tools/lint/bin/pip ] || python3 -m venv .tools/lint
  .tools/lint/bin/pip install --quiet --disable-pip-version-check "${lint_tools[@]}"
fi

if want --lint &&
  [ "$(.tools/bin/cargo-deny --version 2>/dev/null | awk '{print $2}')" != "$CARGO_DENY_VERSION" ]; then
  echo "bootstrap: building cargo-deny $CARGO_DENY_VERSION into .tools (a few minutes, once)" >&2
  cargo install --quiet --locked --root .tools cargo-deny --version "$CARGO_DENY_VERSION"
fi

sqlx_cli_version() { .tools/bin/sqlx --version 2>/dev/null | awk '{print $2}'; }
if want --sqlx-cli && [ "$(sqlx_cli_version)" != "$SQLX_CLI_VERSION" ]; then
  echo "bootstrap: building sqlx-cli $SQLX_CLI_VERSION into .tools (a few minutes, once)" >&2
  cargo install --quiet --locked --root .tools sqlx-cli --version "$SQLX_CLI_VERSION" \
    --no-default-features --features rustls,postgres
fi
