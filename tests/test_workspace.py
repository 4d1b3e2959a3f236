"""Checks on the Cargo workspace that cargo itself does not make.

The declared `rust-version` must be a compiler that can build the locked dependencies: cargo
only reads a dependency's `rust-version` when resolving, so a lock file update can quietly raise
the real minimum above the declared one.
"""
import json
import subprocess
import tomllib

from devtools.paths import ROOT

# The functions run on Linux only: dependencies for other platforms are never built.
PLATFORMS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"]


def version(text):
    return tuple(int(part) for part in text.split("."))


def test_the_declared_rust_version_builds_every_locked_dependency():
    declared = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]
    command = ["cargo", "metadata", "--format-version", "1", "--locked"]
    for platform in PLATFORMS:
        command += ["--filter-platform", platform]
    metadata = json.loads(subprocess.check_output(command, cwd=ROOT))
    built = {node["id"] for node in metadata["resolve"]["nodes"]}
    needs = {
        f'{package["name"]} {package["version"]}': package["rust_version"]
        for package in metadata["packages"]
        if package["id"] in built and package.get("rust_version")
    }
    newest = max(needs.values(), key=version)
    too_new = sorted(name for name, rust in needs.items() if version(rust) > version(declared))
    assert not too_new, f"rust-version {declared} is below what {too_new} need: declare {newest}"


def test_the_release_profile_unwinds_so_a_panicking_request_keeps_the_environment():
    profile = tomllib.loads((ROOT / "Cargo.toml").read_text())["profile"]["release"]
    assert profile["panic"] == "unwind"
