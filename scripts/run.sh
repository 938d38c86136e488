#!/usr/bin/env bash
# Install audit_portal into .venv, apply migrations, make sure an admin exists, and serve it.
# Usage: ./scripts/run.sh            (SQLite in instance/, http://127.0.0.1:5000)
#        DATABASE_URL=postgresql://... ./scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
export FLASK_APP=wsgi
.venv/bin/flask db upgrade
.venv/bin/flask users ensure-admin
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-5000}
echo "audit_portal: http://$HOST:$PORT/  (Ctrl-C to stop)"
if [ "${APP_ENV:-development}" = "production" ]; then
  exec .venv/bin/gunicorn --config gunicorn.conf.py --bind "$HOST:$PORT" wsgi:app
fi
exec .venv/bin/flask run --host "$HOST" --port "$PORT"
