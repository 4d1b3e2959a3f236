#!/usr/bin/env python3
"""Prints the size of each function's Lambda zip (from `make build`) and of the binary in it."""
import json
import os
import pathlib
import subprocess
import sys
import zipfile

target = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--no-deps"]))["target_directory"]
for function in sorted(sys.argv[1:]):
    archive = pathlib.Path(target, "lambda", function, "bootstrap.zip")
    unzipped = sum(entry.file_size for entry in zipfile.ZipFile(archive).infolist())
    print(f"{function:<12} zip {os.path.getsize(archive):>10,} bytes   bootstrap {unzipped:>10,} bytes")
