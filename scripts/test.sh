#!/usr/bin/env bash
# Set up and run the whole test suite: lint (ruff, import contracts), then pytest on the embedded
# configuration (SQLite + in-memory layer), then again on PostgreSQL + Redis
# (DATABASE_URL / REDIS_URL if set, else the local services on 127.0.0.1:5432
# and :6379 when they answer). Each pass runs on pytest-xdist workers, one a core up to 4
# (SWITCHBOARD_TEST_WORKERS overrides; 1 runs in one process), a test file to a worker.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements-dev.txt
PY=.venv/bin/python

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian's chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "Browser tests need /usr/bin/chromium: run 'sudo apt-get install chromium' first." >&2
    exit 1
  fi
fi

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian's nginx for the production-shape tests (tests/production)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  else
    echo "The production-shape tests need nginx: run 'sudo apt-get install nginx' first." >&2
    exit 1
  fi
fi

echo "== ruff"
.venv/bin/ruff check .

echo "== lint-imports (the layer contracts in .importlinter)"
.venv/bin/lint-imports --no-cache

answers() { $PY -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$1" 2>/dev/null; }

WORKERS="${SWITCHBOARD_TEST_WORKERS:-$(( $(nproc) < 4 ? $(nproc) : 4 ))}"
PARALLEL=() WAY="in one process"
if [ "$WORKERS" -gt 1 ]; then PARALLEL=(-n "$WORKERS" --dist loadfile) WAY="on $WORKERS workers"; fi

echo "== pytest: SQLite + in-memory channel layer (${WAY})"
env -u DATABASE_URL -u REDIS_URL $PY -m pytest "${PARALLEL[@]}" "$@"

PG_URL="${DATABASE_URL:-}"
RD_URL="${REDIS_URL:-}"
if [ -z "$PG_URL" ] && answers 5432; then PG_URL="postgres://postgres@127.0.0.1:5432/switchboard"; fi
if [ -z "$RD_URL" ] && answers 6379; then RD_URL="redis://127.0.0.1:6379/0"; fi
if [ -n "$PG_URL" ] && [ -n "$RD_URL" ]; then
  echo "== pytest: PostgreSQL + Redis channel layer (${WAY})"
  DATABASE_URL="$PG_URL" REDIS_URL="$RD_URL" $PY -m pytest "${PARALLEL[@]}" "$@"
elif [ "${REQUIRE_SERVICES:-0}" = 1 ]; then
  echo "PostgreSQL and Redis are required (REQUIRE_SERVICES=1) but did not answer." >&2
  exit 1
else
  echo "== skipped the PostgreSQL + Redis run: services not configured and not answering locally"
fi
