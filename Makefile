# Two commands do all set-up: `make run` (the product on its embedded default) and
# `make test` (dev dependencies plus the whole suite). Both are idempotent.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint install install-dev clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# The cross-language tests' Node.js side (npm canonicalize and unleash-client, pinned by its lock
# file). Without npm those tests skip and say why.
CROSSLANG := tests/crosslang
$(CROSSLANG)/node_modules/.installed: $(CROSSLANG)/package.json $(CROSSLANG)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $(CROSSLANG) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: tests/crosslang will skip"; fi

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev $(CROSSLANG)/node_modules/.installed

# RUN_ARGS: flags of controlplane/run.py, e.g. make run RUN_ARGS=--no-demo-traffic
run: $(VENV)/.installed
	$(PY) -m controlplane.run $(RUN_ARGS)

test: install-dev
	bash scripts/test.sh

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy .

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache $(CROSSLANG)/node_modules
