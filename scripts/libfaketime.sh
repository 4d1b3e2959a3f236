#!/usr/bin/env bash
# Prints the path of libfaketime (Debian's), installing the package when it is missing. The
# IAM-authentication test freezes a function's clock with it, so the auth token the function
# signs is the one the test set as the role's password.
set -euo pipefail

find_lib() { dpkg -L libfaketime 2>/dev/null | grep -m1 '/libfaketime\.so\.1$' || true; }

lib=$(find_lib)
if [ -z "$lib" ]; then
  echo "libfaketime.sh: installing Debian's libfaketime" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libfaketime >&2
  lib=$(find_lib)
fi
[ -n "$lib" ] || { echo "libfaketime.sh: libfaketime.so.1 not found" >&2; exit 1; }
echo "$lib"
