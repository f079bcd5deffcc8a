.PHONY: run production test lint screenshots bench-simulator bench-relay bench-capacity

run:   ## set up and run Switchboard on the embedded default (http://127.0.0.1:8000)
	scripts/run.sh

production:  ## nginx (TLS) + 2 Daphne processes on PostgreSQL and Redis, DEBUG off, https://localhost:8443 (docs/production.md)
	scripts/production.sh

test:  ## set up and run the whole test suite (SQLite, then PostgreSQL + Redis)
	scripts/test.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/lint-imports --no-cache

screenshots:  ## every user page at 1280 and 420 px into docs/screenshots/ (headless Chromium, the simulator)
	SWITCHBOARD_SCREENSHOTS=1 .venv/bin/python -m pytest -q tests/browser/test_screenshots.py

bench-simulator:
	.venv/bin/python bench/simulator.py

bench-relay:
	.venv/bin/python bench/relay.py --repeats 3 --chain-turns 500 --ways minimal,sqlite,postgresql

bench-capacity:  ## README's capacity table: one Daphne on a core of its own, the load on the others
	.venv/bin/python bench/capacity.py --n 50,150,300,500 --processes 1 --clients 2 --minimal --pin
