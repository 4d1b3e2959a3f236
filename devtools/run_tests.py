"""Runs the workspace's Rust test binaries, two at a time where that is safe.

    python3 -m devtools.run_tests [cargo test options...]   # scripts/test.sh passes --locked

`cargo test` runs one test binary after another, and the end-to-end ones spend most of their
time waiting (on `cargo lambda watch`, on processes starting, on Postgres), not computing. So
this builds them with `cargo test --no-run` and runs them itself:

1. first, one at a time: the end-to-end tests whose assertions involve time (a deadline, a
   quiet spell, "promptly") or that load the machine themselves (twenty processes at once), so
   that nothing else competes with them for the two cores;
2. then every other test binary, two at a time (a new one lands here by default), the slowest
   first so that the two queues end together.

Each binary runs from its package's folder, as `cargo test` runs it, with its output printed
whole when it ends. The exit status is 1 if any binary failed.
"""

import concurrent.futures
import json
import pathlib
import subprocess
import sys
import time

# End-to-end test binaries whose assertions involve time, or that load the machine: run alone.
TIMED = {
    "bench_smoke",
    "concurrency",
    "deploys",
    "fleet",
    "freeze",
    "managed_instances",
    "outage",
    "round_trips",
    "slow_dependencies",
}
# The slowest of the others (about 20 to 45 s each here), started first.
SLOWEST = ["secrets", "api", "auth", "rds_proxy", "contract", "tls"]
PARALLEL = 2


def test_binaries(cargo_args):
    """(name, executable, package folder, is end-to-end) for each test binary cargo built."""
    command = ["cargo", "test", *cargo_args, "--workspace", "--lib", "--test", "*", "--no-run",
               "--message-format=json-render-diagnostics"]
    built = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if built.returncode != 0:
        sys.exit(built.returncode)
    binaries = []
    for line in built.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") != "compiler-artifact" or not message.get("executable"):
            continue
        if not message["profile"]["test"]:
            continue
        folder = pathlib.Path(message["manifest_path"]).parent
        name = f"{folder.name}/{message['target']['name']}"
        end_to_end = folder.name == "e2e" and message["target"]["kind"] == ["test"]
        binaries.append((name, message["executable"], folder, end_to_end))
    return binaries


def run(binary):
    name, executable, folder, _ = binary
    started = time.monotonic()
    result = subprocess.run([executable], cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    return name, result.returncode, result.stdout, time.monotonic() - started


def report(outcome, failed):
    name, status, output, seconds = outcome
    print(f"\n--- {name} ({seconds:.1f} s){'' if status == 0 else ' FAILED'}", flush=True)
    print(output, end="", flush=True)
    if status != 0:
        failed.append(name)


def main():
    binaries = test_binaries(sys.argv[1:])
    names = {pathlib.Path(name).name for name, _, _, end_to_end in binaries if end_to_end}
    if not TIMED <= names:
        sys.exit(f"run_tests: no end-to-end test binary named {sorted(TIMED - names)}")
    alone = [b for b in binaries if b[3] and pathlib.Path(b[0]).name in TIMED]

    def slowest_first(binary):
        name = pathlib.Path(binary[0]).name
        end_to_end = binary[3]
        return SLOWEST.index(name) if end_to_end and name in SLOWEST else len(SLOWEST)

    together = sorted((b for b in binaries if b not in alone), key=slowest_first)
    failed = []
    for binary in alone:
        report(run(binary), failed)
    with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        for outcome in pool.map(run, together):
            report(outcome, failed)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)
    print(f"\n{len(binaries)} test binaries passed", file=sys.stderr)


if __name__ == "__main__":
    main()
