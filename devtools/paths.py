"""Where things are: the repository root and Cargo's target directory.

    python3 -m devtools.paths target-dir    # prints the target directory, for shell scripts
"""
import functools
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


@functools.cache
def workspace_metadata() -> dict:
    """`cargo metadata --no-deps`: the workspace's packages, targets and target directory."""
    return json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT))


def target_dir() -> pathlib.Path:
    """Cargo's target directory, honouring CARGO_TARGET_DIR and .cargo/config.toml."""
    return pathlib.Path(workspace_metadata()["target_directory"])


if __name__ == "__main__":
    if sys.argv[1:] != ["target-dir"]:
        sys.exit("usage: python3 -m devtools.paths target-dir")
    print(target_dir())
