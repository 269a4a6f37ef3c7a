# The two commands every new user runs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test bench clean

# Creates .venv and installs the app with its test tools; safe to repeat.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
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

# The relay benchmark (1 to 1,000 streams against a bare httpx-sse reader, memory, wire
# bytes, queries per answer) and the cost dashboard over 1,000,000 ledger rows.
# `make bench BENCH_ARGS=--redis` runs two processes on Redis + PostgreSQL.
bench: install
	$(BIN)/python bench/relay.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
