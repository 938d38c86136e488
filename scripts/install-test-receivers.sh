#!/usr/bin/env bash
# The stream tests deliver to a real rsyslog (Debian's package, run by the tests as their own instance on a
# loopback port; no systemd service is used).
exec "$(dirname "$0")/ensure-debian-package.sh" /usr/sbin/rsyslogd rsyslog
