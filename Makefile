# Two commands set up a fresh machine: `make demo` and `make test`. Both build .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo serve bench lint typecheck unit sam-validate sam-build rules-lint clean

$(STAMP): pyproject.toml layers/nudge/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy layers/nudge/nudge functions

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit sam-validate sam-build

demo: $(STAMP)
	$(BIN)/nudge demo

serve: $(STAMP)
	$(BIN)/nudge serve --port 8080

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .pytest_cache .ruff_cache
