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
def target_dir() -> pathlib.Path:
    """Cargo's target directory, honouring CARGO_TARGET_DIR and .cargo/config.toml."""
    metadata = subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT)
    return pathlib.Path(json.loads(metadata)["target_directory"])


if __name__ == "__main__":
    if sys.argv[1:] != ["target-dir"]:
        sys.exit("usage: python3 -m devtools.paths target-dir")
    print(target_dir())
