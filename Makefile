# Two commands set up a fresh machine: `make demo` and `make test`. Both build .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo serve bench lint typecheck unit browser sdks rules sam-validate sam-build rules-lint checkov clean

# Both installs go through uv (from PyPI, into the venv itself): the same packages pip resolves, in
# a fifth to a half of pip's time (BENCHMARKS.md, "The demo from a fresh clone"). .venv stays a plain
# venv with pip in it (sam build's python workflow runs the venv's pip). uv keeps its own cache
# (~/.cache/uv) and reads no pip.conf: it asks PyPI, as pip does.
UV_VERSION := uv>=0.13,<0.14
# What the environment tells pip about where packages are and which certificates to trust, uv is
# told too (it reads none of pip's settings): a mirror or a proxy's CA that pip uses, uv uses.
ifdef PIP_INDEX_URL
export UV_INDEX_URL ?= $(PIP_INDEX_URL)
endif
ifdef PIP_EXTRA_INDEX_URL
export UV_EXTRA_INDEX_URL ?= $(PIP_EXTRA_INDEX_URL)
endif
ifneq ($(wildcard $(PIP_FIND_LINKS)),)
export UV_FIND_LINKS ?= $(PIP_FIND_LINKS)
endif
ifdef PIP_CERT
export SSL_CERT_FILE ?= $(PIP_CERT)
endif
UV := $(BIN)/uv
UV_INSTALL := $(UV) pip install --quiet --python $(BIN)/python

$(UV):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet '$(UV_VERSION)'

$(STAMP): pyproject.toml layers/nudge/requirements.txt | $(UV)
	$(UV_INSTALL) --upgrade pip
	$(UV_INSTALL) -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

# The demo and `nudge serve` need only what the app runs (no test, lint, SAM or browser tools): a
# fresh clone's `make demo` installs that alone (BENCHMARKS.md, "The demo from a fresh clone"). The
# dev install covers it too (`make test` after `make demo` adds the rest to the same .venv).
RUN_STAMP := $(VENV)/.installed-run

$(RUN_STAMP): pyproject.toml layers/nudge/requirements.txt | $(UV)
	$(UV_INSTALL) -e .
	touch $(RUN_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy layers/nudge/nudge functions bench

# In a random order (pytest-randomly), so no test leans on another having run first; one seed per run
# orders the tests and seeds the hypothesis tests (the fuzzer's cases too). Printed first: replay a
# run with `make unit SEED=<seed>`. Unit and integration tests run on every core (pytest-xdist, each
# worker its own process, so its own moto); e2e then in one process, around its one shared local stack.
# Each prints its ten slowest tests: `make test` must stay under 10 minutes on 2 cores.
unit: $(STAMP) browser sdks
	@seed=$${SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	  echo "test seed $$seed (replay this order and these examples: make unit SEED=$$seed)"; \
	  NUDGE_CHROMIUM=$(CHROMIUM) $(BIN)/pytest -p randomly --randomly-seed=$$seed --hypothesis-seed=$$seed \
	    --durations=10 -n auto tests/unit tests/integration && \
	  NUDGE_CHROMIUM=$(CHROMIUM) $(BIN)/pytest -p randomly --randomly-seed=$$seed --hypothesis-seed=$$seed --durations=10 tests/e2e

# The official Node SDKs the e2e tests drive unchanged (tests/sdk/package.json, versions locked),
# from the npm registry; again only when the lock changes.
SDK_STAMP := tests/sdk/node_modules/.installed
sdks: $(SDK_STAMP)
$(SDK_STAMP): tests/sdk/package.json tests/sdk/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the SDK tests: apt-get install nodejs npm"; exit 1; }
	npm ci --prefix tests/sdk --no-audit --no-fund --loglevel=error
	touch $(SDK_STAMP)

# The report test opens the HTML report in headless Chromium: Debian's package, installed here
# when missing (playwright drives it; it downloads no browser of its own).
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { command -v apt-get >/dev/null && \
	  { apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; }; } || \
	  { echo "Chromium is needed for the report test: apt-get install chromium, or make CHROMIUM=/path/to/chromium"; exit 1; }
	@test -x $(CHROMIUM) && echo "chromium: $(CHROMIUM)"

test: lint typecheck unit rules sam-validate checkov sam-build

# The marketer's checks on the shipped rules: every file valid, every rule test passing.
rules: $(STAMP)
	$(BIN)/nudge rules lint rules
	$(BIN)/nudge rules test rules

demo: $(RUN_STAMP)
	$(BIN)/nudge demo

serve: $(RUN_STAMP)
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
# rules/.nudge-code: the fingerprint of the code a rules snapshot depends on (nudge.rulebook.snapshot),
# so that the cached build (samconfig.toml) rebuilds the rules layer when only that code changed.
sam-build: $(STAMP)
	$(BIN)/python -c "from nudge.rulebook.snapshot import code_fingerprint; print(code_fingerprint())" \
	  > rules/.nudge-code
	PATH="$(abspath $(BIN)):$$PATH" $(SAM_ENV) $(BIN)/sam build
	$(BIN)/python .ci/check_layer_imports.py .aws-sam/build

# checkov scans template.yaml; a check may only be silenced by a skip with its reason in the resource's
# Metadata (checkov: skip: - id, comment). It lives in its own venv: it pins boto3==1.35.49, the app
# needs boto3>=1.40. Offline: no policy download (--skip-download), no guideline mapping
# (BC_SKIP_MAPPING). Fails on any failed check, and when nothing was scanned (a template checkov
# could not parse passes silently otherwise).
TOOLS_VENV := .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed

$(TOOLS_STAMP): pyproject.toml | $(UV)
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(UV) pip install --quiet --python $(TOOLS_VENV)/bin/python --group tools
	touch $(TOOLS_STAMP)

checkov: $(TOOLS_STAMP)
	@out=$$(BC_SKIP_MAPPING=TRUE $(TOOLS_VENV)/bin/checkov -f template.yaml --framework cloudformation \
	    --skip-download --compact --quiet 2>&1); rc=$$?; echo "$$out"; \
	  test $$rc -eq 0 && grep -q 'Passed checks: [1-9]' <<<"$$out" || \
	  { echo "checkov: failed checks (fix them, or skip with a reason in the resource's Metadata)," \
	    "or template.yaml was not scanned"; exit 1; }

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .aws-sam .mypy_cache .pytest_cache .ruff_cache tests/sdk/node_modules
