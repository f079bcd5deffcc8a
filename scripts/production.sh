#!/usr/bin/env bash
# The production shape on this machine, in the foreground: nginx (TLS, static files, WebSocket upgrades) in
# front of N Daphne processes, on PostgreSQL and Redis, DEBUG off. Ctrl-C stops everything.
#   scripts/production.sh                    start (deploy/production.py says what it runs)
#   scripts/production.sh manage ARGS        manage.py with the same settings (e.g. manage createsuperuser)
# Environment: DATABASE_URL, REDIS_URL (default: the local services), SWITCHBOARD_DAPHNE_PROCESSES (2),
# SWITCHBOARD_HTTPS_PORT (8443), SWITCHBOARD_HOSTNAME (localhost), OPENAI_API_KEY; see docs/production.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "The production shape needs nginx: run 'sudo apt-get install nginx' first." >&2
  exit 1
fi
export PATH="$PATH:/usr/sbin"
scripts/setup.sh requirements.txt
exec .venv/bin/python deploy/production.py "$@"
