"""The rules, loaded once, as tests use them.

`SHIPPED` is rules/ as shipped (its onboarding, rescue and upgrade programs are journeys).
`ONE_SHOT_DIR` is rules/ with the sample product's programs as the one-shot triggers they were
before the journeys shipped (tests/one_shot/triggers.yaml, no journeys): the fixture of the tests
of the machinery around a trigger (guardrails, dispatch, channels, feedback, lift), which name
those triggers; a copy made once per test process. `RULES` is that rule set. `UNHELD` is the same with no holdout at all (no control group, no
rule or journey holdouts): tests of what happens to a decision use it, so that a user id that hashes into a
holdout cannot turn a send into `held_out` (the holdout tests set their own percentages).
"""

from __future__ import annotations

import atexit
import dataclasses
import gc
import importlib.util
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

from nudge.rulebook.guardrails import Guardrails
from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import RuleSet

ROOT = Path(__file__).resolve().parents[1]
ONE_SHOT = ROOT / "tests" / "one_shot"


def one_shot_rules(target: Path) -> Path:
    """rules/ copied to `target` with the one-shot triggers in place of the journeys."""
    shutil.copytree(ROOT / "rules", target)
    shutil.copy(ONE_SHOT / "triggers.yaml", target / "triggers.yaml")
    shutil.copy(ONE_SHOT / "triggers_cases.yaml", target / "tests" / "triggers.yaml")
    (target / "tests" / "journeys.yaml").unlink()
    for journey in (target / "journeys").glob("*.yaml"):
        journey.unlink()
    return target


_TEMP = Path(tempfile.mkdtemp(prefix="nudge-one-shot-"))
atexit.register(shutil.rmtree, _TEMP, True)
ONE_SHOT_DIR = one_shot_rules(_TEMP / "rules")
SHIPPED = load_rules(ROOT / "rules")
RULES = load_rules(ONE_SHOT_DIR)


def without_holdouts(rules: RuleSet) -> RuleSet:
    holdout = rules.guardrails.spec.holdout.model_copy(update={"control_group": 0.0})
    spec = rules.guardrails.spec.model_copy(update={"holdout": holdout})
    triggers = [
        dataclasses.replace(t, spec=t.spec.model_copy(update={"holdout": 0.0})) for t in rules.triggers
    ]
    journeys = [
        dataclasses.replace(j, spec=j.spec.model_copy(update={"holdout": 0.0})) for j in rules.journeys
    ]
    return dataclasses.replace(
        rules, triggers=triggers, journeys=journeys, guardrails=Guardrails(spec, rules.guardrails.file)
    )


UNHELD = without_holdouts(RULES)


def load_handler(path: Path, name: str) -> ModuleType:
    """A function's app.py imported afresh under `name`, as a new Lambda container would: its
    module-level wiring runs again with the environment the test set."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        # app.py pauses collection while it loads and freezes what it built: a test process
        # loads many handlers, and what they froze must stay collectable.
        gc.unfreeze()
        gc.enable()
    return module
