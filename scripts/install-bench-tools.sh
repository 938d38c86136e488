#!/usr/bin/env bash
# The benchmarks in bench/ drive the app with Debian's wrk (load generator on loopback).
# Run by the benchmarks themselves when wrk is missing; installs nothing when it is there.
exec "$(dirname "$0")/ensure-debian-package.sh" wrk wrk
