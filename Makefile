# Two commands set up a fresh machine: `make demo` and `make test`. Both build .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo serve bench lint typecheck unit browser rules sam-validate sam-build rules-lint clean

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

unit: $(STAMP) browser
	NUDGE_CHROMIUM=$(CHROMIUM) $(BIN)/pytest

# The report test opens the HTML report in headless Chromium: Debian's package, installed here
# when missing (playwright drives it; it downloads no browser of its own).
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { command -v apt-get >/dev/null && \
	  { apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; }; } || \
	  { echo "Chromium is needed for the report test: apt-get install chromium, or make CHROMIUM=/path/to/chromium"; exit 1; }
	@test -x $(CHROMIUM) && echo "chromium: $(CHROMIUM)"

test: lint typecheck unit rules sam-validate sam-build

# The marketer's checks on the shipped rules: every file valid, every rule test passing.
rules: $(STAMP)
	$(BIN)/nudge rules lint rules
	$(BIN)/nudge rules test rules

demo: $(STAMP)
	$(BIN)/nudge demo

serve: $(STAMP)
	$(BIN)/nudge serve --port 8080

bench: $(STAMP)
	$(BIN)/python -m bench

# sam validate/build run offline with no AWS credentials: they only need a region, and
# telemetry would try the network.
SAM_ENV := AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0

sam-validate: $(STAMP)
	$(SAM_ENV) $(BIN)/sam validate --lint

# The python3.11 build workflow looks up `python3.11` on PATH: the venv's comes first.
# No container: durable_rules compiles here with gcc for python3.11 x86_64.
sam-build: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(SAM_ENV) $(BIN)/sam build
	$(BIN)/python .ci/check_layer_imports.py .aws-sam/build

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .pytest_cache .ruff_cache
