#!/usr/bin/env bash
# Prints the path of libfaketime (Debian's), installing the package when it is missing. The
# IAM-authentication test freezes a function's clock with it, so the auth token the function
# signs is the one the test set as the role's password.
set -euo pipefail
. "$(dirname "$0")/apt.sh"

find_lib() { dpkg -L libfaketime 2>/dev/null | grep -m1 '/libfaketime\.so\.1$' || true; }

lib=$(find_lib)
if [ -z "$lib" ]; then
  echo "libfaketime.sh: installing Debian's libfaketime" >&2
  apt_install libfaketime
  lib=$(find_lib)
fi
[ -n "$lib" ] || { echo "libfaketime.sh: libfaketime.so.1 not found" >&2; exit 1; }
echo "$lib"
