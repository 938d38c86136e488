#!/usr/bin/env bash
# Install a Debian package when the file or command it provides is missing (as root; otherwise say how).
# Usage: scripts/ensure-debian-package.sh <path-or-command> <package>
# Used by install-browser.sh (the browser tests), install-test-receivers.sh (the stream tests) and
# install-bench-tools.sh (the benchmarks).
set -euo pipefail
provides=$1 package=$2
if [ -e "$provides" ] || command -v "$provides" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "$(basename "$0"): $provides is missing; run 'sudo apt-get install -y $package'" >&2
  exit 1
fi
echo "$(basename "$0"): installing Debian's $package package..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "$package" >/dev/null
