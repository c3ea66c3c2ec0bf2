"""The rule set a function runs, read at cold start: the snapshot `sam build` checked, else the
files. Apart from bootstrap.rules (the evaluate and sweep wiring) so that dispatch and the action
functions, which load the rules too, do not import the evaluate and sweep services with it.
"""

from __future__ import annotations

from pathlib import Path

from nudge.observability import logger
from nudge.rulebook.ruleset import RuleSet
from nudge.rulebook.snapshot import read_snapshot
from nudge.rulebook.yamlfile import RuleFileError


def load_rules_or_explain(rules_dir: Path) -> RuleSet:
    """The rule set `sam build` checked (its snapshot, when it is of these very files and code),
    else load_rules, logging every problem as file:line: message before failing the cold start."""
    snapshot, why_not = read_snapshot(rules_dir)
    if snapshot is not None:
        return snapshot
    if why_not:
        logger.warning("rules snapshot not used; loading the rule files", extra={"reason": why_not})
    # Imported here, in the fallback alone: the loader brings YAML, the condition parsers and Jinja,
    # which a cold start reading the snapshot never runs (BENCHMARKS.md section 7).
    from nudge.rulebook.loader import load_rules

    try:
        return load_rules(rules_dir)
    except RuleFileError as exc:
        logger.error(
            "rule files are invalid; fix them (nudge rules lint) and deploy again",
            extra={"rules_dir": str(rules_dir), "problems": [str(p) for p in exc.problems]},
        )
        raise
