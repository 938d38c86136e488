#!/usr/bin/env bash
# Install audit_portal and its test tools into .venv, then lint (ruff, and the import contracts in setup.cfg)
# and run the whole test suite.
# Usage: ./scripts/test.sh [pytest args]
#        TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test ./scripts/test.sh   (on PostgreSQL)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
./scripts/install-browser.sh
./scripts/install-test-receivers.sh
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
