"""The tracking plan the ingest functions run, read at cold start: the one `sam build` checked (the
rules snapshot's plan), else the plan's files. Apart from bootstrap.ruleset so that reading the plan
imports none of the rule set's modules, nor PyYAML (BENCHMARKS.md section 7).
"""

from __future__ import annotations

from pathlib import Path

from nudge.observability import logger
from nudge.rulebook.plan import TrackingPlan, load_plan
from nudge.rulebook.snapshot import read_plan_snapshot


def plan_or_explain(rules_dir: Path) -> TrackingPlan:
    """The snapshot's tracking plan when it is of these very files and code, else load_plan (a bad
    file fails the cold start with its file:line problems)."""
    plan, why_not = read_plan_snapshot(rules_dir)
    if plan is not None:
        return plan
    if why_not:
        logger.warning(
            "rules snapshot not used; loading the tracking plan's files", extra={"reason": why_not}
        )
    return load_plan(rules_dir)
