#!/usr/bin/env bash
# Run Switchboard on the embedded default: SQLite, in-memory channel layer,
# the built-in upstream simulator, Daphne on http://127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements.txt
PY=.venv/bin/python
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
# The demo user (published password) is created only when Daphne will listen on loopback.
BOOTSTRAP="$($PY manage.py bootstrap --bind "$HOST")"
printf '%s\n' "$BOOTSTRAP"
DEMO="$(printf '%s\n' "$BOOTSTRAP" | sed -n 's/^Demo user: //p')"
if [ -z "${OPENAI_API_KEY:-}" ]; then
  $PY manage.py simulate_upstream --host "${SIMULATOR_HOST:-127.0.0.1}" --port "${SIMULATOR_PORT:-8765}" &
  SIM_PID=$!
  trap 'kill $SIM_PID 2>/dev/null || true' EXIT INT TERM
fi
cat <<MSG

  Switchboard is running:  http://$HOST:$PORT/
  Demo user: ${DEMO:-unknown}
  Stop with Ctrl-C.

MSG
$PY -m sessions_app.serve -b "$HOST" -p "$PORT" project.asgi:application
