"""Prints the size of each function's Lambda zip (from `make build`) and of the binary in it.

    python3 -m devtools.sizes create-user get-user ...
"""
import os
import sys
import zipfile

from devtools.paths import target_dir

for function in sorted(sys.argv[1:]):
    archive = target_dir() / "lambda" / function / "bootstrap.zip"
    unzipped = sum(entry.file_size for entry in zipfile.ZipFile(archive).infolist())
    print(f"{function:<12} zip {os.path.getsize(archive):>10,} bytes   bootstrap {unzipped:>10,} bytes")
