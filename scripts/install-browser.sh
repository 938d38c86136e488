#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through Playwright; no browser is ever downloaded.
exec "$(dirname "$0")/ensure-debian-package.sh" /usr/bin/chromium chromium
