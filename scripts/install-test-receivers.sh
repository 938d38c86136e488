#!/usr/bin/env bash
# The stream tests deliver to a real rsyslog (Debian's package, run by the tests as their own instance on a
# loopback port; no systemd service is used), over plain TCP and over TLS (rsyslog-gnutls, its TLS driver).
set -euo pipefail
here="$(dirname "$0")"
"$here/ensure-debian-package.sh" /usr/sbin/rsyslogd rsyslog
set -- /usr/lib/*/rsyslog/lmnsd_gtls.so
"$here/ensure-debian-package.sh" "$1" rsyslog-gnutls
