#!/usr/bin/env bash
# Prints the path of Debian's Chromium, installing the package when it is missing. The browser
# test (e2e/tests/browser.rs) loads a page from one origin in headless Chromium, and the page
# calls the API through the gateway stand-in on another, as a web app calls the deployed API.
set -euo pipefail
. "$(dirname "$0")/apt.sh"

find_bin() { command -v chromium || { [ -x /usr/bin/chromium ] && echo /usr/bin/chromium; } || true; }

bin=$(find_bin)
if [ -z "$bin" ]; then
  echo "chromium.sh: installing Debian's chromium" >&2
  apt_install chromium
  bin=$(find_bin)
fi
[ -n "$bin" ] || { echo "chromium.sh: chromium not found" >&2; exit 1; }
echo "$bin"
