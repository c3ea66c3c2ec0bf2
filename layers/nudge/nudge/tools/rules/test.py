"""`nudge rules test`: run the cases of rules/tests/*.yaml and print PASS or FAIL per case, with
what differed and the conditions behind it, test by test with the user's values.

The cases and their loading are the rulebook's (`nudge.rulebook.cases`); judging a case is the
rule-test use case (`nudge.services.rule_tests`), run here over the in-memory usage store.
"""

from __future__ import annotations

from pathlib import Path

from nudge.adapters.memory import MemoryUsageStore
from nudge.rulebook.cases import TESTS_DIR, LoadedCase
from nudge.rulebook.ruleset import RuleSet
from nudge.services.rule_tests import Judged, judge_case
from nudge.tools.rules.condition_lines import condition_lines, score_lines


def run_case(rules: RuleSet, case: LoadedCase) -> tuple[list[str], Judged | None]:
    """The ways the case's expectation failed (none: it passed), and the judged user."""
    return judge_case(rules, case, MemoryUsageStore())


def run_cases(rules_dir: Path, rules: RuleSet, cases: list[LoadedCase], match: str | None) -> int:
    """Run the cases (those whose name has `match`), print each verdict; 1 if any failed or none ran."""
    if match:
        cases = [c for c in cases if match.lower() in c.name.lower()]
    if not cases:
        print(f"no test cases in {rules_dir / TESTS_DIR}/*.yaml" + (f" matching {match!r}" if match else ""))
        return 1
    failed = 0
    for case in cases:
        failures, judged = run_case(rules, case)
        if not failures:
            print(f"PASS {case.where}: {case.name}")
            continue
        failed += 1
        print(f"FAIL {case.where}: {case.name}")
        for failure in failures:
            print(f"    {failure}")
        if judged is not None:
            for line in _why_failed(rules, case, judged):
                print(f"    {line}")
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _why_failed(rules: RuleSet, case: LoadedCase, judged: Judged) -> list[str]:
    """The conditions behind each failed expectation, test by test with the user's values."""
    e, expect = judged.evaluation, case.expect
    ctx = judged.context
    lines: list[str] = []
    names: list[tuple[str, str]] = []
    if expect.segment is not None and expect.segment != e.segment:
        names += [("segment", expect.segment)]
        if e.segment:
            names += [("segment", e.segment)]
    fired = set(e.fired)
    names += [("trigger", r) for r in expect.fires if r not in fired]
    names += [("trigger", r) for r in expect.not_fires if r in fired]
    names += [("escalation", r) for r in expect.escalates]
    if _differs(expect.band, e.band) or _differs(expect.score, e.score):
        lines += score_lines("user score", rules.user_score, e.score, e.band, ctx)
    if _differs(expect.account_band, e.account_band or None) or _differs(
        expect.account_score, e.account_score
    ):
        lines += score_lines("account score", rules.account_score, e.account_score, e.account_band, ctx)
    for kind, name in dict.fromkeys(names):
        if kind == "segment":
            segment = next(s for s in rules.segments if s.id == name)
            lines.append(f"segment {name}:")
            lines += condition_lines(segment.condition, ctx, 1) if segment.condition else ["  (catch-all)"]
        else:
            trigger = next(t for t in rules.triggers if t.id == name)
            node = trigger.condition if kind == "trigger" else trigger.escalate_when
            if node is not None:
                lines.append(f"{'trigger' if kind == 'trigger' else 'escalate_when of'} {name}:")
                lines += condition_lines(node, ctx, 1)
    return lines


def _differs(want: object, got: object) -> bool:
    return want is not None and want != got
