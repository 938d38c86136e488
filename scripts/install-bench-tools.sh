#!/usr/bin/env bash
# The benchmarks in bench/ drive the app with Debian's wrk (load generator on loopback).
# Run by the benchmarks themselves when wrk is missing; installs nothing when it is there.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-bench-tools: wrk is missing; run 'sudo apt-get install -y wrk'" >&2
  exit 1
fi
echo "install-bench-tools: installing Debian's wrk package..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq wrk >/dev/null
