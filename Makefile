# The two commands every new user runs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080

# Local secrets live in .env (created below, ignored by git) and reach every command.
-include .env
export

.PHONY: install run test clean

# Creates .venv and installs the app with its test tools; safe to repeat.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

.env:
	$(PYTHON) -c 'import secrets; print("SECRET_KEY=" + secrets.token_urlsafe(50))' > .env
	@echo "Created .env with a new SECRET_KEY (kept out of git)."

run: install .env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo "chatsite: http://127.0.0.1:$(PORT)/"
	$(BIN)/daphne --bind 127.0.0.1 --port $(PORT) chatsite.asgi:application

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
