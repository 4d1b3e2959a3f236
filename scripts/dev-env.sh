# Sourced by the dev scripts (dev.sh, dev-db.sh): where the dev database lives across runs, one
# per checkout, unless DEV_DB_DIR says otherwise.
DEV_DB_DIR=${DEV_DB_DIR:-${TMPDIR:-/tmp}/users-api-dev-$(pwd | cksum | cut -d' ' -f1)}
export DEV_DB_DIR
