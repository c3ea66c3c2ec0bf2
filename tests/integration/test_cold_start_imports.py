"""What each function loads at cold start: no module that costs import time and that the function
does not run may creep back into its import (BENCHMARKS.md section 7; bench/importtime.py says
what each costs). Names, not timings: each function's app.py imported in a fresh process, in the
environment template.yaml gives it, as bench/coldstart.py measures it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.coldstart import BASELINE, ROOT, Loaded, targets
from nudge.tools.local.template import load_template

# Loaded by no function: each with what brought it in, once.
NOWHERE = {
    # Some sixty pydantic models: only the OpenAPI document needs them (entrypoints/http/access.py).
    "aws_lambda_powertools.event_handler.openapi.models": "Powertools' OpenAPI models",
    # The X-Ray SDK's patch_all imports every library it can patch; Tracer patches botocore only
    # (nudge/observability.py).
    "aws_xray_sdk.ext.requests": "X-Ray patching requests",
    "aws_xray_sdk.ext.sqlite3": "X-Ray patching sqlite3",
    "aws_xray_sdk.ext.httpx": "X-Ray patching httpx",
    "requests": "requests",
    "sqlite3": "sqlite3",
    "sqlalchemy": "sqlalchemy",
    # Compiled on first evaluation, never at import (nudge.domain.engine).
    "durable_rules": "durable_rules",
    "rich": "the CLI's terminal output",
    # nudge.settings reads its plain fields from the environment itself (25 modules fewer).
    "pydantic_settings": "pydantic-settings",
    "dotenv": "python-dotenv (pydantic-settings' .env files)",
    "moto": "the local stack's AWS",
    # The rule files' loaders: a function reads the snapshot `sam build` checked, and loads the files
    # (nudge.rulebook.loader, imported then) only when the snapshot cannot be used.
    "nudge.rulebook.loader": "the rule set's loader",
    "nudge.rulebook.journey_loader": "the journey files' loader and checks",
    "nudge.rulebook.template_loader": "the templates' loader and checks (Jinja's parser)",
    "nudge.rulebook.conditions": "the condition parser",
    "nudge.rulebook.property_conditions": "the property conditions' parser",
    # PyYAML: every function reads the rules snapshot (the ingest functions its tracking plan alone).
    "yaml": "PyYAML",
    "nudge.rulebook.yamlparse": "the rule files' YAML reader",
    # CLDR's dates and numbers (nudge.domain.cldr): imported by the first value a template formats;
    # the shipped templates format none.
    "babel": "Babel",
}

# Loaded only by the functions named (at most): everyone else must do without. A new function that
# needs one of these is added to its set here. FrontDoorFunction runs the ingest code's HTTP
# resolver for one-event requests; IngestQueueFunction (its consumer) folds Segment messages as
# ingest does.
# The functions that render messages (nudge.services.deliver), those that load the rules, those that
# validate Segment's messages against the tracking plan, and those that read the ledger, the
# suppression list or a secret from SSM (nudge.bootstrap.shared).
RENDERING = {"EmailFunction", "WebhookFunction", "NotifyFunction", "EscalateFunction"}
LOADING_RULES = {"EvaluateFunction", "SweepFunction", "DispatchFunction", *RENDERING}
INGESTING = {"IngestFunction", "FrontDoorFunction", "IngestQueueFunction"}
SHARING = {"DispatchFunction", "FeedbackFunction", *INGESTING, *RENDERING}
ONLY = {
    # Powertools' HTTP resolver: the API.
    "aws_lambda_powertools.event_handler.api_gateway": {"IngestFunction", "FrontDoorFunction"},
    # The rule set's types: the functions that read the rules snapshot.
    "nudge.rulebook.ruleset": LOADING_RULES,
    # Jinja: the functions that render (the snapshot's templates are parsed when first rendered).
    "jinja2": RENDERING,
    # Powertools' parameters (SSM), the ledger and the suppression list: what nudge.bootstrap.shared builds.
    "nudge.bootstrap.shared": SHARING,
    "aws_lambda_powertools.utilities.parameters": SHARING,
    "nudge.services.suppression": SHARING,
    # Segment's message models: ingest, and the evaluating functions (an identify from the product
    # re-evaluates a user) with dispatch (its deferrals, SegmentRechecks, live in the evaluate
    # service); not the sending functions (their journey check reads account facts alone:
    # nudge.services.account_facts), nor the feedback or changes functions.
    "nudge.model.messages": {*INGESTING, "EvaluateFunction", "SweepFunction", "DispatchFunction"},
    "nudge.services.evaluate": {"EvaluateFunction", "SweepFunction", "DispatchFunction"},
}


@pytest.fixture(scope="module")
def after_import() -> Iterator[dict[str, Loaded]]:
    with targets() as every:
        yield {t.name: t.loaded() for t in every if t.name != BASELINE}


@pytest.fixture(scope="module")
def loaded(after_import: dict[str, Loaded]) -> dict[str, set[str]]:
    return {name: state.modules for name, state in after_import.items()}


def _has(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


def test_no_function_loads_what_none_of_them_runs(loaded: dict[str, set[str]]) -> None:
    found = {name: sorted(m for m in NOWHERE if _has(modules, m)) for name, modules in loaded.items()}
    assert found == {name: [] for name in loaded}


def test_each_heavy_module_loads_only_where_it_runs(loaded: dict[str, set[str]]) -> None:
    beyond = {
        module: sorted(
            name for name, modules in loaded.items() if _has(modules, module) and name not in allowed
        )
        for module, allowed in ONLY.items()
    }
    assert beyond == {module: [] for module in ONLY}


def test_every_function_in_the_template_is_checked(loaded: dict[str, set[str]]) -> None:
    resources = load_template(ROOT / "template.yaml")["Resources"]
    functions = {name for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    assert set(loaded) == functions


def test_every_function_resumes_garbage_collection_having_frozen_its_init(
    after_import: dict[str, Loaded],
) -> None:
    # Each app.py pauses collection while it loads (collections then cost a tenth of its CPU and
    # found nothing) and must resume it: a handler that forgot would never collect again. What
    # init built is frozen, so the first collection of the first invocation does not scan it all.
    state = {name: (s.gc_enabled, s.frozen > 10_000) for name, s in after_import.items()}
    assert state == {name: (True, True) for name in after_import}


# Segment's message models (nudge.model.messages) are deferred: built at cold start by the functions
# that validate them on every request, and by no other (evaluate builds Identify only for a journey's
# update step, on first use).
BUILDING_MESSAGES = {"IngestFunction", "FrontDoorFunction", "IngestQueueFunction"}
MESSAGE_MODELS = {f"nudge.model.messages.{name}" for name in ("Track", "Identify", "Group", "Alias", "Batch")}


def test_only_the_ingest_functions_build_the_message_models_at_cold_start(
    after_import: dict[str, Loaded],
) -> None:
    built = {name: sorted(MESSAGE_MODELS & state.built) for name, state in after_import.items()}
    assert built == {
        name: sorted(MESSAGE_MODELS) if name in BUILDING_MESSAGES else [] for name in after_import
    }


def test_no_function_builds_the_rule_file_models_at_cold_start(after_import: dict[str, Loaded]) -> None:
    # Every function reads the snapshot the rules layer's build wrote (the ingest functions its
    # tracking plan alone): no rule file is validated at cold start.
    built = {
        name: sorted(m for m in state.built if m.startswith("nudge.rulebook."))
        for name, state in after_import.items()
    }
    assert built == {name: [] for name in after_import}
