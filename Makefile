# Everyday commands. `make dev` and `make test` work on a fresh machine: they install what they
# need into .venv/ and .tools/ and start their own throwaway Postgres.
.PHONY: dev dev-secrets dev-aws token traces test test-quick e2e bench check prepare template migrate build sizes deploy delete logs dev-reset

export PATH := $(CURDIR)/.venv/bin:$(CURDIR)/.tools/bin:$(PATH)

PORT ?= 9000
FUNCTIONS := $(notdir $(wildcard functions/*))

## Serve every function on http://localhost:$(PORT) over a local Postgres (Ctrl-C stops all).
dev:
	PORT=$(PORT) scripts/dev.sh

## The same, with the credentials in a local Secrets Manager (moto): the production path.
dev-secrets:
	DEV_SECRETS=1 PORT=$(PORT) scripts/dev.sh

## The same against real AWS: the secret DB_SECRET_ID, read with AWS_PROFILE's credentials.
dev-aws:
	DEV_AWS=1 PORT=$(PORT) scripts/dev.sh

## Print a one-hour token for the local stack: TOKEN=$$(make -s token)
token:
	@python3 -m devtools.dev_token

## Print the traces sent to http://127.0.0.1:4318 (run `make dev` with
## OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 beside it).
traces:
	cargo run --quiet -p e2e --bin otlp-receiver

## Run every check and test (what CI runs).
test:
	scripts/test.sh

## The quick loop: format, clippy, then the unit and integration tests against a throwaway
## Postgres (no SAM, no end-to-end tests). One test: make test-quick ARGS=<name filter>.
test-quick: check
	scripts/with-postgres.sh cargo test --workspace --exclude e2e $(ARGS)

## One end-to-end test file against a throwaway Postgres: make e2e T=concurrency
## (the name of a file in e2e/tests/, without .rs).
e2e:
	@test -n "$(T)" || { echo "usage: make e2e T=<file in e2e/tests/, e.g. concurrency>"; exit 2; }
	@test -f e2e/tests/$(T).rs || { echo "make e2e: no e2e/tests/$(T).rs"; exit 2; }
	scripts/bootstrap.sh
	cargo build --workspace --bins
	E2E_LIBFAKETIME=$$(scripts/libfaketime.sh) E2E_PGBOUNCER=$$(scripts/pgbouncer.sh) \
	  E2E_CHROMIUM=$$(scripts/chromium.sh) \
	  scripts/with-postgres.sh cargo test -p e2e --test $(T) $(ARGS)

## Cold-start benchmark (release build): init with DATABASE_URL vs a Secrets Manager secret.
bench:
	bench/run.sh

## Format and lint only.
check:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## Regenerate .sqlx/ after changing a query or a migration (uses the dev database).
prepare:
	DATABASE_URL=$$(scripts/dev-db.sh) .venv/bin/python -m devtools.sqlx_prepare_check --write

## Rewrite what the route declarations give template.yaml and Cargo.toml's watch router (each
## API function's resources, the 405 routes, the capacity tables): after adding or changing a
## route in shared/src/routes/.
template:
	python3 -m devtools.template

## Apply migrations to the dev database (starting it if needed) and print its URL.
migrate:
	scripts/dev-db.sh

## Release builds for Lambda (arm64, Graviton), zipped as Lambda takes them, with their sizes.
build:
	scripts/bootstrap.sh
	cargo lambda build --release --arm64 --output-format zip $(foreach f,$(FUNCTIONS),-p $(f))
	@$(MAKE) --no-print-directory sizes

sizes:
	@python3 -m devtools.sizes $(FUNCTIONS)

## Deploy with SAM: guided the first time (it records your answers in samconfig.toml).
deploy:
	scripts/bootstrap.sh
	sam build
	@if grep -q '^\[default.deploy' samconfig.toml; then sam deploy; else sam deploy --guided; fi

## Delete the deployed stack (a created database is kept as a snapshot).
delete:
	sam delete

## Recent logs of one function: make logs FN=CreateUserFunction (the template's logical id).
logs:
	@test -n "$(FN)" || { echo "usage: make logs FN=<function logical id, e.g. GetUserFunction>"; exit 2; }
	sam logs --name $(FN) --tail

## Stop and delete the dev database.
dev-reset:
	scripts/dev-db.sh reset
