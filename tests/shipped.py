"""The shipped rules, loaded once, as tests use them.

`RULES` is rules/ as shipped. `UNHELD` is the same with no holdout at all (no control group, no
rule holdouts): tests of what happens to a decision use it, so that a user id that hashes into a
holdout cannot turn a send into `held_out` (the holdout tests set their own percentages).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

from nudge.rulebook.guardrails import Guardrails
from nudge.rulebook.ruleset import RuleSet, load_rules

ROOT = Path(__file__).resolve().parents[1]
RULES = load_rules(ROOT / "rules")


def without_holdouts(rules: RuleSet) -> RuleSet:
    holdout = rules.guardrails.spec.holdout.model_copy(update={"control_group": 0.0})
    spec = rules.guardrails.spec.model_copy(update={"holdout": holdout})
    triggers = [
        dataclasses.replace(t, spec=t.spec.model_copy(update={"holdout": 0.0})) for t in rules.triggers
    ]
    return dataclasses.replace(rules, triggers=triggers, guardrails=Guardrails(spec, rules.guardrails.file))


UNHELD = without_holdouts(RULES)


def load_handler(path: Path, name: str) -> ModuleType:
    """A function's app.py imported afresh under `name`, as a new Lambda container would: its
    module-level wiring runs again with the environment the test set."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
