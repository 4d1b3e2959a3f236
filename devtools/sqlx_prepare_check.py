"""Checks that the committed SQLx offline data (`.sqlx/`) matches the queries and the schema,
as `cargo sqlx prepare --check` does, without building sqlx-cli (minutes on a clean machine).

    DATABASE_URL=postgres://…/migrated_db python3 -m devtools.sqlx_prepare_check [--write]

With `--write` (what `make prepare` runs) it replaces `.sqlx/` with what it found instead.

The query macros expand again against the live database (`SQLX_OFFLINE=false`), writing what
they find to a scratch folder, which must then equal `.sqlx/` file for file. Like sqlx-cli, it
makes cargo re-run the macros by touching the crate roots; unlike it, it puts their modification
times back afterwards, so later builds do not recompile the workspace for nothing.
"""
import json
import os
import shutil
import subprocess
import sys

from devtools.paths import ROOT, target_dir, workspace_metadata

COMMITTED = ROOT / ".sqlx"


def crate_roots():
    return sorted({target["src_path"] for package in workspace_metadata()["packages"]
                   for target in package["targets"]})


def regenerate(scratch, locked):
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    (target_dir() / "sqlx-tmp").mkdir(parents=True, exist_ok=True)
    roots = crate_roots()
    times = {root: os.stat(root) for root in roots}
    for root in roots:
        os.utime(root)
    try:
        subprocess.run(
            # `--locked` when checking (CI); `make prepare` is a change in progress, whose new
            # function crate cargo must be free to add to Cargo.lock (it failed without).
            ["cargo", "check", "--workspace", "--all-targets", "--quiet"] + (["--locked"] if locked else []),
            cwd=ROOT, check=True,
            env=dict(os.environ, SQLX_OFFLINE="false", SQLX_OFFLINE_DIR=str(scratch),
                     SQLX_TMP=str(target_dir() / "sqlx-tmp")))
    finally:
        for root, stat in times.items():
            os.utime(root, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def queries(folder):
    return {path.name: json.loads(path.read_text()) for path in folder.glob("query-*.json")}


def main():
    if not os.environ.get("DATABASE_URL"):
        sys.exit("sqlx_prepare_check: set DATABASE_URL to a migrated database")
    scratch = target_dir() / "sqlx-prepare-check"
    write = "--write" in sys.argv[1:]
    regenerate(scratch, locked=not write)
    expected, committed = queries(scratch), queries(COMMITTED)
    if write:
        for name in committed.keys() - expected.keys():
            (COMMITTED / name).unlink()
        for name in expected:
            shutil.copyfile(scratch / name, COMMITTED / name)
        print(f"sqlx_prepare_check: wrote the {len(expected)} queries to .sqlx/")
        return
    problems = [f"missing from .sqlx/: {name}" for name in sorted(expected.keys() - committed.keys())]
    problems += [f"no longer used, delete it: .sqlx/{name}" for name in sorted(committed.keys() - expected.keys())]
    problems += [f"differs from the schema: .sqlx/{name}" for name in sorted(expected.keys() & committed.keys())
                 if expected[name] != committed[name]]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit("the SQLx offline data is stale: run `make prepare` and commit .sqlx/")
    print(f"sqlx_prepare_check: .sqlx/ holds exactly the {len(expected)} queries, current with the schema")


if __name__ == "__main__":
    main()
