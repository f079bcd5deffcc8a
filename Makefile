.PHONY: run test lint bench-simulator bench-relay

run:   ## set up and run Switchboard on the embedded default (http://127.0.0.1:8000)
	scripts/run.sh

test:  ## set up and run the whole test suite (SQLite, then PostgreSQL + Redis)
	scripts/test.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/lint-imports --no-cache

bench-simulator:
	.venv/bin/python bench/simulator.py

bench-relay:
	.venv/bin/python bench/relay.py
