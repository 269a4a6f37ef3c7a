# The two commands every new user runs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint format bench clean

# Creates .venv and installs the app with its test and lint tools; safe to repeat.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $@

# Local secrets (SECRET_KEY, FIELD_ENCRYPTION_KEYS) live in .env, which the settings
# read; it is created once and kept out of git. PORT (default 8080) and the rest come
# from the environment or .env.
run: install
	$(BIN)/python -m chatsite.localenv .env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python -m chatsite.serve

# The suite on SQLite and the in-memory layer, then again on PostgreSQL and Redis when
# they are reachable (.ci/services starts them; CI must not skip that pass).
test: install
	$(BIN)/python -m pytest
	$(BIN)/python tests/scaleout.py

# What CI checks besides the tests: lint, types, and models without a migration.
# pre-commit runs the same tools on commit but fetches its hooks from GitHub, so CI
# runs them from .venv. DEBUG=1: the settings refuse to start without SECRET_KEY otherwise.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

# Applies what lint can fix by itself: import order, modern syntax, formatting.
format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The relay benchmark (1 to 1,000 streams against a bare httpx-sse reader, memory, wire
# bytes, queries per answer) and the cost dashboard over 1,000,000 ledger rows.
# `make bench BENCH_ARGS=--redis` runs two processes on Redis + PostgreSQL.
bench: install
	$(BIN)/python bench/relay.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
