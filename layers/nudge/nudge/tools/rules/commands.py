"""`nudge rules lint | test | backtest | explain | schema`: the marketer's tools for rules/.

    lint      every problem in every rule file and test file as file:line: message; exit 1
    test      the cases in rules/tests/*.yaml: given events and a time, expect a segment and rules
    backtest  replay an NDJSON history with a simulated clock: per rule and ISO week, fires and users
    explain   why one user of an NDJSON history is or is not in each segment and rule
    schema    JSON Schemas of the rule files, so editors complete and check them (rules/schema/)

Marketers run these before deploying, so none of them ever shows a Python traceback: problems in
their files come out as file:line: message, and a crash of Nudge itself as one line that says so.
Every command replays usage through the same code the Lambdas run (the ingest use case, the
in-memory store, `evaluate`), so what they show is what production would do.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import re
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from nudge.adapters.memory import MemoryUsageStore
from nudge.conditions import facts
from nudge.conditions import features as F
from nudge.conditions import tree as C
from nudge.conditions.features import AccountFacts
from nudge.domain.evaluate import Evaluation, evaluate
from nudge.model.decisions import SegmentState, Value
from nudge.model.durations import Duration, format_duration
from nudge.model.messages import Group, Identify, Message, Track
from nudge.model.state import UserState
from nudge.rulebook import conditions as specs
from nudge.rulebook.guardrails import GUARDRAILS_FILE, GuardrailsFile
from nudge.rulebook.plan import MILESTONES_FILE, PLAN_FILE, MilestonesFile, TrackingPlanFile
from nudge.rulebook.ruleset import (
    SCORING_FILE,
    SEGMENTS_FILE,
    TRIGGERS_FILE,
    RuleSet,
    Score,
    ScoringFile,
    SegmentsFile,
    TemplateFile,
    TriggersFile,
    load_rules,
)
from nudge.rulebook.yamlfile import (
    Loc,
    RuleFileError,
    RuleProblem,
    YamlDoc,
    did_you_mean,
    load_yaml,
    validate,
)
from nudge.services.ingest import IngestLimits, ingest
from nudge.tools.samples.ndjson import NdjsonError, read_ndjson

Run = Callable[[argparse.Namespace], int]

DEFAULT_RULES = Path("rules")
TESTS_DIR = "tests"
SCHEMA_DIR = "schema"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = subparsers.add_parser(
        "rules",
        help="Check, test, backtest and explain the marketer rule files (rules/).",
        description="Tools for the rule files under rules/: run `nudge rules lint` and `nudge rules test` "
        "before every deploy.",
    )
    sub = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")

    lint = sub.add_parser(
        "lint",
        help="Check every rule file and test file; print each problem as file:line: message.",
        description="Load and cross-check the tracking plan, milestones, segments, scoring, triggers, "
        "templates and the test cases in tests/. Prints every problem as file:line: message and "
        "exits 1 when there is any; exits 0 and prints a one-line summary when all is well.",
    )
    lint.add_argument("dir", nargs="?", type=Path, default=DEFAULT_RULES, help="rules folder (default rules)")
    lint.set_defaults(run=_guarded("lint", run_lint))

    test = sub.add_parser(
        "test",
        help="Run the cases in DIR/tests/*.yaml: given events and a time, expect segments and rules.",
        description="Each case gives one user's events (at times like -3d relative to the case's "
        "`at`), traits and account, and says what must hold: the segment, the rules that must and "
        "must not fire, score bands. Prints PASS or FAIL per case, with why on failure; exits 1 "
        "if any case fails.",
    )
    test.add_argument("dir", nargs="?", type=Path, default=DEFAULT_RULES, help="rules folder (default rules)")
    test.add_argument("-k", dest="match", default=None, metavar="TEXT", help="only cases whose name has TEXT")
    test.set_defaults(run=_guarded("test", run_test))

    backtest = sub.add_parser(
        "backtest",
        help="Replay an NDJSON history with a simulated clock: how often each rule would fire.",
        description="Replay the Segment messages of FILE day by day through ingest, evaluating at each "
        "day's end the users who changed that day and the users due a time-based re-check. Prints, "
        "per rule, how many times it would fire and for how many distinct users (a rule that keeps "
        "holding fires again once its cooldown has passed; other guardrails such as caps, quiet "
        "hours, consent and priority are not applied), and the segment sizes and transitions. "
        "--weekly breaks both down per ISO week.",
    )
    backtest.add_argument("--events", type=Path, required=True, metavar="FILE", help="NDJSON (.gz ok)")
    backtest.add_argument(
        "--rules", type=Path, default=DEFAULT_RULES, metavar="DIR", help="rules folder (default rules)"
    )
    backtest.add_argument("--weekly", action="store_true", help="break fires and segments down per ISO week")
    backtest.add_argument(
        "--fires-csv", type=Path, default=None, metavar="FILE", help="also write every fire (who, when)"
    )
    backtest.set_defaults(run=_guarded("backtest", run_backtest))

    explain = sub.add_parser(
        "explain",
        help="Why a user is or is not in each segment and rule, with each test's value.",
        description="Fold USER's messages from FILE (up to --at), then show for each segment, score "
        "signal and trigger whether it holds, and each test with the user's value.",
    )
    explain.add_argument("user", metavar="USER", help="the user id (userId, or anon:<anonymousId>)")
    explain.add_argument("--events", type=Path, required=True, metavar="FILE", help="NDJSON (.gz ok)")
    explain.add_argument(
        "--rules", type=Path, default=DEFAULT_RULES, metavar="DIR", help="rules folder (default rules)"
    )
    explain.add_argument(
        "--at",
        type=_iso_arg,
        default=None,
        metavar="ISO",
        help="judge at this time (default: the file's end)",
    )
    explain.add_argument("--json", action="store_true", help="print the explanation as JSON")
    explain.set_defaults(run=_guarded("explain", run_explain))

    schema = sub.add_parser(
        "schema",
        help="Write JSON Schemas for the rule files (editor completion and checks).",
        description="Write one JSON Schema per rule file into DIR. Each shipped rule file's first line "
        "(# yaml-language-server: $schema=schema/<file>.schema.json) points editors at them.",
    )
    schema.add_argument(
        "--out", type=Path, default=DEFAULT_RULES / SCHEMA_DIR, metavar="DIR", help="default rules/schema"
    )
    schema.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files in DIR are out of date"
    )
    schema.set_defaults(run=_guarded("schema", run_schema))


def _guarded(command: str, run: Run) -> Run:
    """Run a command; a crash of Nudge itself becomes one line saying so, never a traceback."""

    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            print(
                f"nudge rules {command}: internal error, not a problem in your files: "
                f"{type(exc).__name__}: {exc} (at {Path(frame.filename).name}:{frame.lineno}); "
                "please report it",
                file=sys.stderr,
            )
            return 1

    return guarded


def _iso_arg(text: str) -> datetime:
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time like 2026-10-01T00:00:00Z, got {text!r}"
        ) from None


def _aware(value: datetime) -> datetime:
    # A time without an offset is UTC, as Segment reads timestamps.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# Loading, shared by every command


def load_checked(rules_dir: Path) -> tuple[RuleSet | None, list[RuleProblem]]:
    """The rule set, or the problems that stop it loading (a missing folder included)."""
    if not rules_dir.exists():
        return None, [
            RuleProblem(str(rules_dir), 0, "no such folder; give the folder that holds tracking-plan.yaml")
        ]
    if not rules_dir.is_dir():
        return None, [RuleProblem(str(rules_dir), 0, "is a file, not a folder; give the rules folder")]
    try:
        return load_rules(rules_dir), []
    except RuleFileError as exc:
        return None, exc.problems


def print_problems(problems: Iterable[RuleProblem]) -> int:
    """Print problems once each, by file and line; return how many."""
    unique = sorted(set(problems), key=lambda p: (p.file, p.line, p.message))
    for problem in unique:
        print(problem if problem.line else f"{problem.file}: {problem.message}")  # a folder has no line
    files = len({p.file for p in unique})
    print(
        f"{len(unique)} problem{'s' * (len(unique) != 1)} in {files} file{'s' * (files != 1)}",
        file=sys.stderr,
    )
    return len(unique)


def _load_or_report(rules_dir: Path) -> RuleSet | None:
    rules, problems = load_checked(rules_dir)
    if problems:
        print_problems(problems)
    return rules


# ---------------------------------------------------------------------------------------------
# lint


def run_lint(args: argparse.Namespace) -> int:
    rules_dir: Path = args.dir
    rules, problems = load_checked(rules_dir)
    cases: list[LoadedCase] = []
    if rules_dir.is_dir():
        cases, case_problems = load_cases(rules_dir, rules)
        problems += case_problems
    if problems:
        print_problems(problems)
        return 1
    assert rules is not None
    print(
        f"{rules_dir}: OK - {len(rules.plan.events)} events, {len(rules.plan.milestones)} milestones, "
        f"{len(rules.segments)} segments, {len(rules.user_score.signals) + len(rules.account_score.signals)} "
        f"score signals, {len(rules.triggers)} triggers, {len(rules.templates)} templates, "
        f"{len(cases)} test cases"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# Test cases (rules/tests/*.yaml)

CASE_USER = "test-user"
# A Wednesday noon: mid-week and mid-day, so "-3d" never straddles a question of which day it is.
DEFAULT_CASE_AT = datetime(2026, 6, 17, 12, tzinfo=UTC)
_RELATIVE = re.compile(r"^-((?:\d+[wdhm])+)$")
_RELATIVE_PART = re.compile(r"(\d+)([wdhm])")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}
WHEN_HELP = "write -3d, -2w, -36h, -3d12h, now, or an ISO time like 2026-06-14T09:00:00Z"
Band = Literal["high", "mid", "low"]


def _as_datetime(value: Any) -> Any:
    """YAML reads `2026-06-17` as a date and `2026-06-17T12:00:00Z` as a datetime; both are times."""
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value


def resolve_when(text: str, at: datetime) -> datetime:
    """`now`, `-3d12h` (before `at`) or an ISO time, as an instant."""
    compact = text.replace(" ", "")
    if compact == "now":
        return at
    relative = _RELATIVE.match(compact)
    if relative:
        parts = _RELATIVE_PART.findall(relative.group(1))
        return at - sum((timedelta(**{_UNITS[unit]: int(n)}) for n, unit in parts), timedelta())
    return _aware(datetime.fromisoformat(compact))


def _when_text(value: Any) -> str:
    value = _as_datetime(value)
    if isinstance(value, datetime):
        return _iso(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a time; {WHEN_HELP}")
    try:
        resolve_when(value, DEFAULT_CASE_AT)
    except ValueError:
        raise ValueError(f"{value!r} is not a time; {WHEN_HELP}") from None
    return value


When = Annotated[str, BeforeValidator(_when_text), Field(json_schema_extra={"examples": ["-3d", "now"]})]
Instant = Annotated[datetime, BeforeValidator(_as_datetime)]


class _CaseModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GivenEvent(_CaseModel):
    event: str = Field(description="An event of the tracking plan.")
    at: When = Field(default="now", description="When: -3d (before the case's at), now, or an ISO time.")
    every: Duration | None = Field(default=None, description="Repeat this often (with times), e.g. 1d.")
    times: int = Field(default=1, ge=1, le=1000, description="How many occurrences, `every` apart.")
    properties: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _repeat(self) -> GivenEvent:
        if self.times > 1 and self.every is None:
            raise ValueError("times needs every (how far apart), e.g. every: 1d")
        return self


class GivenAccount(_CaseModel):
    id: str = Field(default="test-account", min_length=1, description="The account (groupId).")
    traits: dict[str, Any] = Field(default_factory=dict, description="Account traits, e.g. mrr, seats, plan.")


class Expect(_CaseModel):
    segment: str | None = Field(default=None, description="The user's lifecycle segment.")
    fires: list[str] = Field(default_factory=list, description="Triggers that must fire.")
    not_fires: list[str] = Field(default_factory=list, description="Triggers that must not fire.")
    escalates: list[str] = Field(
        default_factory=list, description="Triggers that must also hand the account to customer success."
    )
    band: Band | None = Field(default=None, description="The user's score band.")
    score: float | None = Field(default=None, description="The user's score.")
    account_band: Band | None = Field(default=None, description="The account's score band.")
    account_score: float | None = Field(default=None, description="The account's score.")

    @model_validator(mode="after")
    def _something(self) -> Expect:
        single = (self.segment, self.band, self.score, self.account_band, self.account_score)
        if all(v is None for v in single) and not (self.fires or self.not_fires or self.escalates):
            raise ValueError("say what to expect: segment, fires, not_fires, escalates, band or score")
        return self


class Case(_CaseModel):
    name: str = Field(min_length=1, description="What the case shows, in plain words.")
    at: Instant | None = Field(default=None, description="When to judge (default: the file's at).")
    given: list[GivenEvent] = Field(default_factory=list, description="The user's events.")
    traits: dict[str, Any] = Field(default_factory=dict, description="User traits (an identify call).")
    account: GivenAccount | None = Field(default=None, description="The user's account (a group call).")
    expect: Expect


class CasesFile(_CaseModel):
    at: Instant = Field(default=DEFAULT_CASE_AT, description="Default time of the cases (a Wednesday noon).")
    cases: list[Case] = Field(min_length=1)


@dataclass(frozen=True)
class LoadedCase:
    file: str
    line: int
    name: str
    at: datetime
    messages: list[Message]
    expect: Expect

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def load_cases(rules_dir: Path, rules: RuleSet | None) -> tuple[list[LoadedCase], list[RuleProblem]]:
    """Every case of rules_dir/tests/*.yaml; names are checked against `rules` when it loaded."""
    cases: list[LoadedCase] = []
    problems: list[RuleProblem] = []
    for path in sorted((rules_dir / TESTS_DIR).glob("*.y*ml")):
        display = _display(path)
        try:
            doc = load_yaml(path, display)
            suite = validate(doc, CasesFile)
        except RuleFileError as exc:
            problems.extend(exc.problems)
            continue
        seen: dict[str, int] = {}
        for index, case in enumerate(suite.cases):
            loc = ("cases", index)
            if case.name in seen:
                problems.append(
                    doc.problem(
                        (*loc, "name"), f"duplicate case name '{case.name}' (also line {seen[case.name]})"
                    )
                )
            seen.setdefault(case.name, doc.line_of((*loc, "name")))
            before = len(problems)
            if rules is not None:
                _check_case_names(doc, loc, case, rules, problems)
            loaded = _case_messages(doc, loc, case, case.at or suite.at, problems)
            if loaded is not None and len(problems) == before:
                cases.append(
                    LoadedCase(
                        doc.file, doc.line_of(loc), case.name, case.at or suite.at, loaded, case.expect
                    )
                )
    return cases, problems


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _check_case_names(
    doc: YamlDoc, loc: tuple[str | int, ...], case: Case, rules: RuleSet, problems: list[RuleProblem]
) -> None:
    def known(kind: str, name: str, names: Iterable[str], where: tuple[str | int, ...]) -> None:
        choices = list(names)
        if name not in choices:
            problems.append(doc.problem(where, f"unknown {kind} '{name}'{did_you_mean(name, choices)}"))

    for i, given in enumerate(case.given):
        known("event", given.event, rules.plan.events, (*loc, "given", i, "event"))
    for trait in case.traits:
        known("user trait", trait, rules.plan.user_traits, (*loc, "traits", trait))
    if case.account is not None:
        for trait in case.account.traits:
            known("account trait", trait, rules.plan.account_traits, (*loc, "account", "traits", trait))
    expect = case.expect
    if expect.segment is not None:
        known("segment", expect.segment, [s.id for s in rules.segments], (*loc, "expect", "segment"))
    triggers = [t.id for t in rules.triggers]
    for key in ("fires", "not_fires", "escalates"):
        for i, rule in enumerate(getattr(expect, key)):
            known("trigger", rule, triggers, (*loc, "expect", key, i))
    for rule in set(expect.fires) & set(expect.not_fires):
        problems.append(doc.problem((*loc, "expect"), f"'{rule}' is under both fires and not_fires"))
    escalating = {t.id for t in rules.triggers if t.escalate_when is not None}
    for i, rule in enumerate(expect.escalates):
        if rule in triggers and rule not in escalating:
            problems.append(
                doc.problem(
                    (*loc, "expect", "escalates", i),
                    f"trigger '{rule}' has no escalate_when; list it under fires",
                )
            )


def _case_messages(
    doc: YamlDoc, loc: tuple[str | int, ...], case: Case, at: datetime, problems: list[RuleProblem]
) -> list[Message] | None:
    """The case as the Segment messages a product would have sent."""
    messages: list[Message] = []
    times: list[datetime] = []
    ok = True
    for i, given in enumerate(case.given):
        start = resolve_when(given.at, at)
        step = given.every or timedelta(0)
        last = start + step * (given.times - 1)
        if last > at:
            problems.append(
                doc.problem(
                    (*loc, "given", i, "at"),
                    f"event at {_iso(last)} is after the case's time {_iso(at)}; "
                    "give a time before it, e.g. -1d",
                )
            )
            ok = False
            continue
        for k in range(given.times):
            moment = start + step * k
            times.append(moment)
            messages.append(
                Track(
                    userId=CASE_USER,
                    event=given.event,
                    timestamp=moment,
                    messageId=f"case-{i}-{k}",
                    properties=given.properties,
                )
            )
    # Traits and account arrive with the first event, as a product's signup flow sends them.
    first = min(times, default=at)
    try:
        if case.traits:
            messages.append(
                Identify.model_validate(
                    {
                        "userId": CASE_USER,
                        "traits": case.traits,
                        "timestamp": first,
                        "messageId": "case-identify",
                    }
                )
            )
    except ValidationError as exc:
        ok = False
        problems.extend(_trait_problems(doc, exc, (*loc, "traits"), "trait"))
    if case.account is not None:
        try:
            messages.append(
                Group.model_validate(
                    {
                        "userId": CASE_USER,
                        "groupId": case.account.id,
                        "traits": case.account.traits,
                        "timestamp": first,
                        "messageId": "case-group",
                    }
                )
            )
        except ValidationError as exc:
            ok = False
            problems.extend(_trait_problems(doc, exc, (*loc, "account", "traits"), "account trait"))
    return messages if ok else None


@dataclass(frozen=True)
class Judged:
    """One user judged at one instant: the state, the account and what the rules made of them."""

    user: UserState
    account: AccountFacts | None
    evaluation: Evaluation
    now: datetime

    @property
    def context(self) -> C.Context:
        e = self.evaluation
        return C.Context(
            user=self.user,
            now=self.now,
            account=self.account,
            segment=e.segment or "",
            score=e.score,
            band=e.band,
            account_score=e.account_score,
            account_band=e.account_band,
        )


def account_facts(store: MemoryUsageStore, user: UserState) -> AccountFacts | None:
    account_id = user.account_id
    if account_id is None:
        return None
    stored = store.load_account(account_id)
    traits: dict[str, object] = dict(stored.value.trait_values()) if stored else {}
    return AccountFacts(traits=traits, rollup=store.load_rollup(account_id))


def replay(store: MemoryUsageStore, messages: Sequence[Message], rules: RuleSet, now: datetime) -> list[str]:
    """Ingest messages received at `now` exactly as the ingest Lambda would; return the refusals."""
    result = ingest(list(enumerate(messages)), rules.plan, store, now, IngestLimits(), sleep=lambda _s: None)
    return [f"message {p.index}: {p.message}" for p in result.errors]


def run_case(rules: RuleSet, case: LoadedCase) -> tuple[list[str], Judged | None]:
    """The ways the case's expectation failed (none: it passed), and the judged user."""
    store = MemoryUsageStore()
    refused = replay(store, case.messages, rules, case.at)
    if refused:
        return [f"Nudge refused the case's events: {'; '.join(refused)}"], None
    stored = store.users.get(CASE_USER)
    user = stored.value if stored else UserState(user_id=CASE_USER)
    account = account_facts(store, user)
    judged = Judged(user, account, evaluate(rules, user, account, None, case.at), case.at)
    e, expect = judged.evaluation, case.expect
    failures: list[str] = []
    if expect.segment is not None and e.segment != expect.segment:
        failures.append(f"segment: expected {expect.segment}, got {e.segment}")
    fired = set(e.fired)
    failures += [f"fires: expected {r} to fire; it did not" for r in expect.fires if r not in fired]
    failures += [f"not_fires: expected {r} not to fire; it fired" for r in expect.not_fires if r in fired]
    escalated = {d.rule for d in e.decisions if d.action == "escalate"}
    failures += [
        f"escalates: expected {r} to escalate; it did not" for r in expect.escalates if r not in escalated
    ]
    for key, want, got in (
        ("band", expect.band, e.band),
        ("account_band", expect.account_band, e.account_band or None),
        ("score", expect.score, e.score),
        ("account_score", expect.account_score, e.account_score),
    ):
        if want is not None and want != got:
            shown = _show_value(got) if got is not None else "no account"
            failures.append(f"{key}: expected {_show_value(want)}, got {shown}")
    if failures:
        failures.append(f"(fired: {', '.join(e.fired) or 'nothing'}; score {e.score:g} {e.band})")
    return failures, judged


def run_test(args: argparse.Namespace) -> int:
    rules_dir: Path = args.dir
    rules, problems = load_checked(rules_dir)
    cases, case_problems = load_cases(rules_dir, rules) if rules_dir.is_dir() else ([], [])
    if problems or case_problems:
        print_problems([*problems, *case_problems])
        return 1
    assert rules is not None
    if args.match:
        cases = [c for c in cases if args.match.lower() in c.name.lower()]
    if not cases:
        print(
            f"no test cases in {rules_dir / TESTS_DIR}/*.yaml"
            + (f" matching {args.match!r}" if args.match else "")
        )
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
        lines += _score_lines("user score", rules.user_score, e.score, e.band, ctx)
    if _differs(expect.account_band, e.account_band or None) or _differs(
        expect.account_score, e.account_score
    ):
        lines += _score_lines("account score", rules.account_score, e.account_score, e.account_band, ctx)
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


# ---------------------------------------------------------------------------------------------
# Explaining a condition test by test


def _differs(want: object, got: object) -> bool:
    return want is not None and want != got


def condition_lines(node: C.Node, ctx: C.Context, depth: int = 0) -> list[str]:
    """A condition as an indented tree: each part with ✓ or ✗ and each test with the user's value."""
    pad = "  " * depth
    ok = C.holds(node, ctx)
    if isinstance(node, C.All):
        node = _without_guards(node)
    if isinstance(node, C.Check):
        return [f"{pad}{_mark(ok)} {_check_text(node, ctx)}"]
    if isinstance(node, C.Not):
        return [f"{pad}{_mark(ok)} not:", *condition_lines(node.item, ctx, depth + 1)]
    choice = _one_of(node)
    if choice is not None:  # `segment: [a, b]` reads better as one line than as an any-of tree
        fact, values = choice
        value = fact.compute(ctx)
        needs = ", ".join(map(_show_value, values))
        return [f"{pad}{_mark(ok)} {fact.describe}: {_show_value(value)} (needs one of {needs})"]
    lines = [f"{pad}{_mark(ok)} {'all of' if isinstance(node, C.All) else 'any of'}:"]
    for item in node.items:
        lines += condition_lines(item, ctx, depth + 1)
    return lines


def _without_guards(node: C.All) -> C.Node:
    """Drop the "is a number" guard the parser adds before a numeric trait's bounds.

    The guard only keeps a missing trait from passing `at_most`; the bound beside it shows the
    value ("missing") anyway, so a marketer need not see a test they never wrote.
    """
    others = {n.fact.key for n in node.items if isinstance(n, C.Check) and not _is_guard(n)}
    kept = tuple(
        n for n in node.items if not (isinstance(n, C.Check) and _is_guard(n) and n.fact.key in others)
    )
    return kept[0] if len(kept) == 1 else C.All(kept)


def _is_guard(check: C.Check) -> bool:
    return check.op == "gt" and check.value == facts.MISSING_NUMBER


def _one_of(node: C.All | C.AnyOf) -> tuple[C.Fact, list[Value]] | None:
    if not isinstance(node, C.AnyOf):
        return None
    checks = [n for n in node.items if isinstance(n, C.Check) and n.op == "eq"]
    if len(checks) != len(node.items) or len({c.fact.key for c in checks}) != 1:
        return None
    return checks[0].fact, [c.value for c in checks]


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _is_flag(check: C.Check) -> bool:
    return check.fact.key.startswith("did__")  # did-but-not facts are 1 (yes) or 0 (no)


def _check_text(check: C.Check, ctx: C.Context) -> str:
    value = check.fact.compute(ctx)
    shown = ("yes" if value == 1 else "no") if _is_flag(check) else _show_value(value)
    return f"{check.fact.describe}: {shown} (needs {_needs(check)})"


def _needs(check: C.Check) -> str:
    op, value = check.op, check.value
    if _is_flag(check):
        return "yes" if value == 1 else "no"
    if op == "lt" and value == F.NEVER:
        return "to be reached"  # `milestone: x`: reached at any time
    if op == "gt" and value == facts.MISSING_NUMBER:
        return "a number"
    if value == "":
        return "no value" if op == "eq" else "a value"
    words = {
        "eq": "",
        "neq": "not ",
        "gte": "at least ",
        "lte": "at most ",
        "gt": "more than ",
        "lt": "less than ",
    }
    return f"{words[op]}{_show_value(value)}"


def _show_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        if value >= F.NEVER:
            return "never"
        if value <= facts.MISSING_NUMBER:
            return "missing"
        return f"{value:.1f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    if value == "":
        return "none"
    return str(value)


# ---------------------------------------------------------------------------------------------
# explain


def run_explain(args: argparse.Namespace) -> int:
    rules = _load_or_report(args.rules)
    if rules is None:
        return 1
    try:
        raw = list(read_ndjson(args.events))
    except NdjsonError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.events}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    at: datetime = args.at or _file_end(raw) or datetime.now(UTC)
    # Validate only the messages that matter (the user's and their account's): a 90-day history
    # holds hundreds of thousands, and pydantic would spend seconds on the others.
    chosen = _raw_of_user_and_account(raw, args.user)
    parsed, skipped = _parse_messages(chosen, str(args.events))
    _report_skipped(skipped)
    wanted = [m for m in parsed if m.timestamp is None or m.timestamp <= at]
    if not any(m.identity == args.user for m in wanted):
        users = {_raw_identity(item) for item in raw}
        print(
            f"{args.user}: no messages for this user in {args.events} up to {_iso(at)}"
            f"{did_you_mean(args.user, (u for u in users if u))}",
            file=sys.stderr,
        )
        return 1
    store = MemoryUsageStore()
    replay(store, wanted, rules, at)
    user = store.users[args.user].value
    account = account_facts(store, user)
    judged = Judged(user, account, evaluate(rules, user, account, None, at), at)
    if args.json:
        print(json.dumps(explain_data(rules, judged), indent=2, default=str))
    else:
        print("\n".join(explain_lines(rules, judged, str(args.events))))
    return 0


def _file_end(raw: Sequence[dict[str, Any]]) -> datetime | None:
    """The latest timestamp in the file: explaining "as of the end of the history" by default."""
    return max((t for item in raw if (t := _timestamp(item)) is not None), default=None)


_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)


def _parse_messages(raw: Iterable[dict[str, Any]], name: str) -> tuple[list[Message], list[str]]:
    """Valid messages, and `file:line: reason` for each one ingest would refuse outright."""
    messages: list[Message] = []
    skipped: list[str] = []
    for number, item in enumerate(raw, start=1):
        try:
            messages.append(_MESSAGE.validate_python(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            skipped.append(f"{name}:{number}: {'.'.join(map(str, first['loc']))}: {first['msg']}")
    return messages, skipped


def _report_skipped(skipped: Sequence[str], shown: int = 5) -> None:
    """Invalid lines are skipped, as ingest would refuse them; say so, briefly."""
    for line in skipped[:shown]:
        print(f"skipped {line}", file=sys.stderr)
    if len(skipped) > shown:
        print(f"... and {len(skipped) - shown} more invalid messages skipped", file=sys.stderr)


def _raw_identity(item: dict[str, Any]) -> str:
    """The user a raw message is about, as Message.identity would say, without validating it."""
    user, anonymous = item.get("userId"), item.get("anonymousId")
    if user not in (None, ""):
        return str(user)
    return f"anon:{anonymous}" if anonymous not in (None, "") else ""


def _raw_of_user_and_account(raw: Sequence[dict[str, Any]], user_id: str) -> list[dict[str, Any]]:
    """The user's messages and those of everyone in the user's latest account (its weekly usage)."""
    own = [item for item in raw if _raw_identity(item) == user_id]
    groups = [item for item in own if item.get("type") == "group" and item.get("groupId") not in (None, "")]
    if not groups:
        return own
    latest = max(groups, key=lambda item: _timestamp(item) or datetime.min.replace(tzinfo=UTC))
    account = str(latest["groupId"])
    members = {
        _raw_identity(item)
        for item in raw
        if item.get("type") == "group" and str(item.get("groupId")) == account
    }
    return [item for item in raw if _raw_identity(item) in members]


def _timestamp(item: dict[str, Any]) -> datetime | None:
    text = item.get("timestamp")
    if not isinstance(text, str):
        return None
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        return None


def explain_lines(rules: RuleSet, judged: Judged, source: str) -> list[str]:
    e, user, ctx = judged.evaluation, judged.user, judged.context
    now = judged.now
    signed_up = F.signed_up_at(user)
    lines = [f"{user.user_id} at {_iso(now)} (messages up to then from {source})"]
    if signed_up:
        lines.append(f"  signed up {_iso(signed_up)}, {F.age_days(user, now):.1f} days before")
    if user.last_meaningful:
        days = F.days_since_event(user, "any", now)
        lines.append(f"  last meaningful use {_iso(user.last_meaningful)}, {days:.1f} days before")
    reached = ", ".join(
        f"{name} {at.date()}" for name, at in sorted(user.milestones.items(), key=lambda kv: kv[1])
    )
    lines.append(f"  milestones: {reached or 'none'}")
    counts = ", ".join(f"{n} {c}" for n, c in sorted(user.event_counts.items()))
    lines.append(f"  events: {counts or 'none'}")
    sessions = F.sessions_per_week(user, now)
    lines.append(
        f"  frequency {F.frequency_band(user, now)} ({sessions:.1f} sessions a week over 4 weeks), "
        f"active days 7d {F.active_days_within(user, 7, now)}, 28d {F.active_days_within(user, 28, now)}"
    )
    if judged.account is not None:
        traits = ", ".join(
            f"{k} {v}" for k, v in sorted(judged.account.traits.items()) if k not in ("created_at",)
        )
        lines.append(f"  account {user.account_id}: {traits or 'no traits'}")
    lines.append(f"  next time-based re-check: {_iso(e.next_check_at) if e.next_check_at else 'none'}")
    lines.append("")
    lines += _score_lines("user score", rules.user_score, e.score, e.band, ctx)
    if judged.account is not None:
        lines += _score_lines("account score", rules.account_score, e.account_score, e.account_band, ctx)
    lines.append("")
    lines.append(f"Segments, in order: {user.user_id} is in the first that holds -> {e.segment}")
    earlier: str | None = None
    for segment in rules.segments:
        if segment.condition is None:
            verdict = (
                "YES, the user's segment (catch-all)" if segment.id == e.segment else "catch-all, not reached"
            )
            lines.append(f"  {segment.id}: {verdict}")
            continue
        ok = C.holds(segment.condition, ctx)
        if segment.id == e.segment:
            verdict = "YES, the user's segment"
        elif ok:
            verdict = f"holds, but {earlier} comes first"
        else:
            verdict = "no"
        lines.append(f"  {segment.id}: {verdict}")
        lines += condition_lines(segment.condition, ctx, 2)
        if ok and earlier is None:
            earlier = segment.id
    lines.append("")
    lines.append("Triggers (before cooldowns and guardrails):")
    fired = set(e.fired)
    escalated = {d.rule for d in e.decisions if d.action == "escalate"}
    for trigger in rules.triggers:
        spec = trigger.spec
        verdict = "FIRES" if trigger.id in fired else "does not fire"
        lines.append(f"  {trigger.id} ({spec.kind}, {spec.action}, template {spec.template}): {verdict}")
        lines += condition_lines(trigger.condition, ctx, 2)
        if trigger.escalate_when is not None:
            escalates = "escalates to customer success" if trigger.id in escalated else "no escalation"
            lines.append(f"    escalate_when: {escalates}")
            lines += condition_lines(trigger.escalate_when, ctx, 3)
    return lines


def _score_lines(label: str, score: Score, value: float, band: str, ctx: C.Context) -> list[str]:
    bands = score.bands
    lines = [f"{label}: {value:g} -> {band} (high from {bands.high:g}, mid from {bands.mid:g})"]
    for signal in score.signals:
        ok = C.holds(signal.condition, ctx)
        lines.append(f"  {_mark(ok)} {signal.id} {signal.points:+g}")
        lines += condition_lines(signal.condition, ctx, 2)
    return lines


def explain_data(rules: RuleSet, judged: Judged) -> dict[str, Any]:
    """The explanation as data: each condition as a tree of tests with values."""
    e, ctx = judged.evaluation, judged.context

    def tree(node: C.Node) -> dict[str, Any]:
        if isinstance(node, C.Check):
            return {
                "test": node.fact.describe,
                "value": node.fact.compute(ctx),
                "op": node.op,
                "expected": node.value,
                "holds": node.holds(ctx),
            }
        if isinstance(node, C.Not):
            return {"not": tree(node.item), "holds": C.holds(node, ctx)}
        key = "all" if isinstance(node, C.All) else "any"
        return {key: [tree(n) for n in node.items], "holds": C.holds(node, ctx)}

    return {
        "user": judged.user.user_id,
        "at": _iso(judged.now),
        "segment": e.segment,
        "score": e.score,
        "band": e.band,
        "account": judged.user.account_id,
        "account_score": e.account_score,
        "account_band": e.account_band,
        "fired": e.fired,
        "next_check_at": _iso(e.next_check_at) if e.next_check_at else None,
        "segments": [
            {"id": s.id, "chosen": s.id == e.segment, "condition": tree(s.condition) if s.condition else None}
            for s in rules.segments
        ],
        "triggers": [
            {
                "id": t.id,
                "fires": t.id in e.fired,
                "condition": tree(t.condition),
                "escalate_when": tree(t.escalate_when) if t.escalate_when else None,
            }
            for t in rules.triggers
        ],
    }


# ---------------------------------------------------------------------------------------------
# backtest


@dataclass(frozen=True)
class Fire:
    at: datetime
    week: str
    rule: str  # trigger id, with " (escalate)" for an escalate_when hand-off
    action: str
    user: str
    account: str | None
    segment: str | None


@dataclass
class BacktestResult:
    first_day: date
    last_day: date
    messages: int = 0
    refused: list[str] = field(default_factory=list)
    evaluations: int = 0
    fires: list[Fire] = field(default_factory=list)
    sizes: dict[str, Counter[str]] = field(default_factory=dict)  # ISO week -> segment -> users at its end
    entries: dict[str, Counter[str]] = field(default_factory=dict)  # ISO week -> segment -> users entering
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    users: int = 0
    accounts: int = 0

    @property
    def weeks(self) -> list[str]:
        return list(self.sizes)

    def final_sizes(self) -> Counter[str]:
        return self.sizes[self.weeks[-1]] if self.sizes else Counter()


def _day_end(day: date) -> datetime:
    # The last instant of the UTC day: "within 1d" and today's counts still mean this day.
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) - timedelta(microseconds=1)


def backtest(
    rules: RuleSet, messages: Sequence[Message], progress: Callable[[int, int], None] | None = None
) -> BacktestResult:
    """Replay `messages` day by day with a simulated clock, deciding as the evaluate service would.

    Each day's messages are ingested at the day's end; then the users they touched (and the
    members of accounts whose traits changed) are evaluated, and so is everyone whose
    `next_check_at` has passed, as the sweep would find them. A decision counts when its
    decision_id is new for the user's rule and action (the evaluate service publishes exactly
    those), new overall (consumers dedupe on it: an account escalation raised by two of its users
    is one hand-off), and the rule's own cooldown has passed since it last counted for that user
    (or account): decision ids change with fixed cooldown windows, and the guardrails hold the
    "not again for this long" the marketer wrote. Other guardrails (caps, quiet hours, consent,
    priority) are not applied.
    """
    by_day: dict[date, list[Message]] = defaultdict(list)
    for message in messages:
        if message.timestamp is not None:
            by_day[message.timestamp.astimezone(UTC).date()].append(message)
    days = sorted(by_day)
    if not days:
        raise ValueError("no messages with a timestamp to replay")
    result = BacktestResult(first_day=days[0], last_day=days[-1], messages=len(messages))
    store = MemoryUsageStore()
    segments: dict[str, SegmentState] = {}
    members: dict[str, set[str]] = defaultdict(set)
    due: list[tuple[datetime, str]] = []  # a heap of (when, user); entries no longer scheduled are skipped
    scheduled: dict[str, datetime] = {}
    decided: dict[tuple[str, str], str] = {}  # (user, rule:action) -> last decision_id, as the service keeps
    published: set[str] = set()
    last_sent: dict[tuple[str, str], datetime] = {}  # (rule label, user or account) -> last counted
    by_id = {t.id: t for t in rules.triggers}
    total = (days[-1] - days[0]).days + 1
    for offset in range(total):
        day = days[0] + timedelta(days=offset)
        now = _day_end(day)
        week = week_of(day)
        todays = sorted(by_day.get(day, []), key=lambda m: m.timestamp or now)
        result.refused += replay(store, todays, rules, now)
        touched = {m.identity for m in todays}
        for uid in touched:
            stored = store.users.get(uid)
            if stored is not None and stored.value.account_id is not None:
                members[stored.value.account_id].add(uid)
        for account_id in {m.groupId for m in todays if isinstance(m, Group)}:
            touched |= members[account_id]
        while due and due[0][0] <= now:
            when, uid = heapq.heappop(due)
            if scheduled.get(uid) == when:
                touched.add(uid)
        accounts: dict[str, AccountFacts | None] = {}  # one rollup read per account per day
        for uid in sorted(touched):
            stored = store.users.get(uid)
            if stored is None:
                continue
            user = stored.value
            account_id = user.account_id or ""
            if account_id not in accounts:
                accounts[account_id] = account_facts(store, user)
            evaluation = evaluate(rules, user, accounts[account_id], segments.get(uid), now)
            result.evaluations += 1
            segments[uid] = evaluation.segments
            if evaluation.entered is not None:
                result.entries.setdefault(week, Counter())[evaluation.entered] += 1
                result.transitions[(evaluation.exited or "(new)", evaluation.entered)] += 1
            scheduled.pop(uid, None)
            if evaluation.next_check_at is not None:
                scheduled[uid] = evaluation.next_check_at
                heapq.heappush(due, (evaluation.next_check_at, uid))
            for decision in evaluation.decisions:
                key = (uid, f"{decision.rule}:{decision.action}")
                if decided.get(key) == decision.decision_id:
                    continue
                decided[key] = decision.decision_id
                if decision.decision_id in published:
                    continue
                published.add(decision.decision_id)
                trigger = by_id[decision.rule]
                handoff = decision.action == "escalate" and trigger.spec.action != "escalate"
                label = f"{decision.rule} (escalate)" if handoff else decision.rule
                subject = (user.account_id or uid) if decision.action == "escalate" else uid
                previous = last_sent.get((label, subject))
                if previous is not None and (trigger.spec.once or now - previous < trigger.spec.cooldown):
                    continue
                last_sent[(label, subject)] = now
                result.fires.append(
                    Fire(now, week, label, decision.action, uid, user.account_id, evaluation.segment)
                )
        if day.weekday() == 6 or offset == total - 1:
            result.sizes[week] = Counter(s.segment or "(none)" for s in segments.values())
        if progress is not None:
            progress(offset + 1, total)
    result.users = len(store.users)
    result.accounts = len(store.accounts)
    return result


def week_of(day: date) -> str:
    iso = day.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def run_backtest(args: argparse.Namespace) -> int:
    rules = _load_or_report(args.rules)
    if rules is None:
        return 1
    began = time.perf_counter()
    try:
        messages, skipped = _parse_messages(read_ndjson(args.events), str(args.events))
    except NdjsonError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.events}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    _report_skipped(skipped)
    if not any(m.timestamp is not None for m in messages):
        print(f"{args.events}: no messages with a timestamp to replay", file=sys.stderr)
        return 1
    with _progress() as progress:
        result = backtest(rules, messages, progress)
    elapsed = time.perf_counter() - began
    print_backtest(rules, result, weekly=args.weekly, elapsed=elapsed, source=str(args.events))
    if args.fires_csv is not None:
        write_fires_csv(args.fires_csv, result.fires)
        print(f"wrote {len(result.fires)} fires to {args.fires_csv}")
    return 0


class _progress:
    """A progress bar on stderr while replaying, only when stderr is a terminal."""

    def __enter__(self) -> Callable[[int, int], None] | None:
        if not sys.stderr.isatty():
            self._bar: Any = None
            return None
        from rich.progress import Progress

        self._bar = Progress(transient=True)
        self._bar.start()
        task = self._bar.add_task("replaying days", total=None)

        def advance(done: int, total: int) -> None:
            self._bar.update(task, completed=done, total=total)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def write_fires_csv(path: Path, fires: Iterable[Fire]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["at", "week", "rule", "action", "user", "account", "segment"])
        for fire in fires:
            writer.writerow(
                [
                    _iso(fire.at),
                    fire.week,
                    fire.rule,
                    fire.action,
                    fire.user,
                    fire.account or "",
                    fire.segment or "",
                ]
            )


def _rule_labels(rules: RuleSet) -> list[str]:
    labels: list[str] = []
    for trigger in rules.triggers:
        labels.append(trigger.id)
        if trigger.escalate_when is not None and trigger.spec.action != "escalate":
            labels.append(f"{trigger.id} (escalate)")
    return labels


def print_backtest(
    rules: RuleSet, result: BacktestResult, *, weekly: bool, elapsed: float, source: str
) -> None:
    from rich.console import Console
    from rich.table import Table

    # Piped to a file or a pager, the tables need not fit 80 columns: let them be as wide as they are.
    console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 240)
    console.print(
        f"Backtest of {source}: {result.messages:,} messages, {result.users:,} users, "
        f"{result.accounts:,} accounts, "
        f"{result.first_day} to {result.last_day} ({len(result.weeks)} ISO weeks); "
        f"{result.evaluations:,} evaluations in {elapsed:.0f}s"
    )
    if result.refused:
        console.print(f"{len(result.refused):,} messages refused by ingest (e.g. {result.refused[0]})")
    labels = _rule_labels(rules)
    by_rule: dict[str, list[Fire]] = defaultdict(list)
    for fire in result.fires:
        by_rule[fire.rule].append(fire)

    totals = Table(title="Fires over the whole period (each rule's cooldown applied; other guardrails not)")
    for column in ("rule", "action", "fires", "distinct users", "first", "e.g."):
        totals.add_column(column, justify="right" if column in ("fires", "distinct users") else "left")
    for label in labels:
        fires = by_rule.get(label, [])
        users = list(dict.fromkeys(f.user for f in fires))
        action = (
            fires[0].action
            if fires
            else ("escalate" if label.endswith("(escalate)") else _action(rules, label))
        )
        first = str(fires[0].at.date()) if fires else "-"
        totals.add_row(label, action, str(len(fires)), str(len(users)), first, ", ".join(users[:3]))
    console.print(totals)

    segment_ids = [s.id for s in rules.segments]
    entered = Counter[str]()
    for counts in result.entries.values():
        entered.update(counts)
    final = result.final_sizes()
    sizes = Table(title=f"Segments at the end ({result.last_day}) and entries over the period")
    for column in ("segment", "users", "entries"):
        sizes.add_column(column, justify="left" if column == "segment" else "right")
    for segment in segment_ids:
        sizes.add_row(segment, str(final.get(segment, 0)), str(entered.get(segment, 0)))
    console.print(sizes)

    moves = Table(title="Most frequent segment transitions")
    for column in ("from", "to", "users"):
        moves.add_column(column, justify="right" if column == "users" else "left")
    for (before, after), count in result.transitions.most_common(12):
        moves.add_row(before, after, str(count))
    console.print(moves)

    if weekly:
        per_week = Table(title="Fires per ISO week: fires / distinct users")
        per_week.add_column("week")
        for label in labels:
            per_week.add_column(label, justify="right", overflow="fold")
        cells: dict[tuple[str, str], list[Fire]] = defaultdict(list)
        for fire in result.fires:
            cells[(fire.week, fire.rule)].append(fire)
        for week in result.weeks:
            row = [week]
            for label in labels:
                fires = cells.get((week, label), [])
                row.append(f"{len(fires)} / {len({f.user for f in fires})}" if fires else "-")
            per_week.add_row(*row)
        console.print(per_week)

        seg_week = Table(title="Segment sizes at each ISO week's end (+ users who entered that week)")
        seg_week.add_column("week")
        for segment in segment_ids:
            seg_week.add_column(segment, justify="right", overflow="fold")
        for week in result.weeks:
            counts, came = result.sizes[week], result.entries.get(week, Counter())
            seg_week.add_row(week, *(f"{counts.get(s, 0)} (+{came.get(s, 0)})" for s in segment_ids))
        console.print(seg_week)


def _action(rules: RuleSet, rule: str) -> str:
    return next((t.spec.action for t in rules.triggers if t.id == rule), "")


# ---------------------------------------------------------------------------------------------
# schema

DRAFT = "http://json-schema.org/draft-07/schema#"
CONDITION_FIELDS = ("when", "escalate_when")
SCHEMAS: dict[str, tuple[type[BaseModel], str]] = {
    PLAN_FILE: (TrackingPlanFile, "Nudge tracking plan: the product's events, features and traits"),
    MILESTONES_FILE: (MilestonesFile, "Nudge milestones: moments reached by doing every listed event"),
    SEGMENTS_FILE: (SegmentsFile, "Nudge lifecycle segments: a user is in the first that matches"),
    SCORING_FILE: (ScoringFile, "Nudge scoring: weighted signals, score bands for users and accounts"),
    TRIGGERS_FILE: (TriggersFile, "Nudge triggers: when to send which message (or escalate)"),
    GUARDRAILS_FILE: (GuardrailsFile, "Nudge guardrails: caps, quiet hours, consent, holdouts, sender"),
    "template.yaml": (TemplateFile, "Nudge message template (Jinja2, autoescaped)"),
    "tests.yaml": (CasesFile, "Nudge rule tests: given events, expect segments and rules"),
}
# Help shown by editors for fields the models leave undescribed.
FIELD_HELP: dict[tuple[str, str], str] = {
    ("TriggerSpec", "kind"): "onboarding, rescue, upgrade or escalation.",
    ("TriggerSpec", "action"): "email, push, sms, or escalate (hand the account to customer success).",
    ("TriggerSpec", "template"): "A file in templates/, without .yaml.",
    ("TriggerSpec", "when"): "When the trigger fires: a condition.",
    ("SegmentSpec", "id"): "lower_snake_case name of the segment.",
    ("SignalSpec", "when"): "When the signal's points count: a condition (no segment or score inside).",
    ("SignalSpec", "points"): "Points added to the score when the signal holds.",
    ("Bands", "high"): "A score at or above this is 'high'.",
    ("Bands", "mid"): "A score at or above this (and below high) is 'mid'; below is 'low'.",
    ("TemplateFile", "subject"): "Email subject (Jinja2).",
    ("TemplateFile", "text"): "Plain-text body (Jinja2).",
    ("TemplateFile", "html"): "HTML body (Jinja2, autoescaped).",
}
_DURATION = {"type": "string", "pattern": r"^\s*\d+\s*[smhdw]\s*$"}
_BANDS = ["high", "mid", "low"]
_NAME = {"type": "string", "pattern": r"^[a-z][a-z0-9_]*$"}


def _one_or_many(item: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [item, {"type": "array", "items": item, "minItems": 1}]}


# Each leaf of the condition language: its help, its spec model (or the schema of a bare value),
# and which keys it needs. Checked against conditions.LEAVES so a new leaf cannot be forgotten.
LEAF_HELP: dict[str, str] = {
    "segment": "The user's lifecycle segment is this one (or one of a list). Triggers only.",
    "milestone": "The user has reached this milestone (milestones.yaml).",
    "days_since": "Days since the user last did an event ('any' = any meaningful event) or reached a "
    "milestone. at_least N: has not done it for N days; never matches a user younger than N days.",
    "count": "How many times an event happened within a window (whole days, 1d to 12w).",
    "active_days": "Days with meaningful use within a window.",
    "feature": "Adoption of a feature: never, tried, or habitual (used on 3 of the last 28 days).",
    "trait": "A user trait (from identify): equals, in, not_equals, at_least, at_most or exists.",
    "account": "The user's account: a trait, a metric (active_users, active_users_trend, score) or its band.",
    "score": "The user's score (scoring.yaml) or its band: high, mid, low.",
    "weeks_below": "Complete weeks in a row with a metric below a threshold, e.g. sessions below 2.",
    "trend": "Week-over-week change of a metric, in percent.",
    "did": "Did an event but not another within a time after it, e.g. signed up, no setup within 1d.",
    "age": "Days since the user signed up.",
    "frequency": "Sessions a week over the last 4 complete weeks: light, medium (2+) or heavy (5+).",
}
LEAF_MODELS: dict[str, type[BaseModel]] = {
    "days_since": specs.DaysSinceSpec,
    "count": specs.CountSpec,
    "active_days": specs.ActiveDaysSpec,
    "feature": specs.FeatureSpec,
    "trait": specs.TraitSpec,
    "account": specs.AccountSpec,
    "score": specs.ScoreSpec,
    "weeks_below": specs.WeeksBelowSpec,
    "trend": specs.TrendSpec,
    "did": specs.DidSpec,
    "age": specs.Bounds,
}
# Help for the keys inside conditions, shown by editors on hover and completion.
KEY_HELP: dict[str, str] = {
    "at_least": "At least this (inclusive).",
    "at_most": "At most this (inclusive).",
    "within": "A window of whole days back from now, e.g. 7d, 28d or 4w (at most 12w).",
    "event": "An event of the tracking plan.",
    "milestone": "A milestone of milestones.yaml.",
    "name": "The name: a feature (feature), or a trait (trait).",
    "equals": "Exactly this value.",
    "in": "One of these values, e.g. [free, team].",
    "not_equals": "Anything but this value (a missing trait counts as different).",
    "exists": "true: the trait has a value; false: it has none.",
    "trait": "An account trait, e.g. mrr, seats, plan.",
    "metric": "What to measure.",
    "band": "A score band: high, mid or low (or a list of them).",
    "threshold": "Below this many per week counts as a quiet week.",
    "weeks": "How many complete weeks in a row (1-12).",
    "direction": "down or up.",
    "by_at_least": "Change in percent, e.g. 50.",
    "but_not": "The event that did not follow within the time.",
}
_BOUNDS = [{"required": ["at_least"]}, {"required": ["at_most"]}]
LEAF_RULES: dict[str, dict[str, Any]] = {
    "days_since": {
        "allOf": [{"oneOf": [{"required": ["event"]}, {"required": ["milestone"]}]}, {"anyOf": _BOUNDS}]
    },
    "count": {"anyOf": _BOUNDS},
    "active_days": {"anyOf": _BOUNDS},
    "age": {"anyOf": _BOUNDS},
    "account": {"oneOf": [{"required": ["trait"]}, {"required": ["metric"]}, {"required": ["band"]}]},
    "score": {"anyOf": [{"required": ["band"]}, *_BOUNDS]},
    "trait": {
        "anyOf": [{"required": [k]} for k in ("equals", "in", "not_equals", "at_least", "at_most", "exists")]
    },
}


def condition_defs() -> dict[str, Any]:
    """JSON Schema of the condition language: one key per condition, all/any/not nesting."""
    missing = set(specs.LEAVES) - set(LEAF_HELP)
    if missing:
        raise RuntimeError(f"conditions without a schema: {sorted(missing)}; add them to LEAF_HELP")
    defs: dict[str, Any] = {}
    leaves: dict[str, Any] = {
        "segment": _one_or_many(_NAME),
        "milestone": _NAME,
        "frequency": _one_or_many({"enum": ["light", "medium", "heavy"]}),
    }
    for leaf, model in LEAF_MODELS.items():
        spec = model.model_json_schema(ref_template="#/$defs/{model}")
        for name, sub in spec.pop("$defs", {}).items():
            defs[name] = sub
        spec.update(LEAF_RULES.get(leaf, {}))
        name = f"Condition_{leaf}"
        defs[name] = spec
        leaves[leaf] = {"$ref": f"#/$defs/{name}"}
    properties: dict[str, Any] = {
        "all": {
            "type": "array",
            "items": {"$ref": "#/$defs/Condition"},
            "minItems": 1,
            "description": "Every one of these holds.",
        },
        "any": {
            "type": "array",
            "items": {"$ref": "#/$defs/Condition"},
            "minItems": 1,
            "description": "At least one of these holds.",
        },
        "not": {"$ref": "#/$defs/Condition", "description": "This does not hold."},
    }
    for leaf in specs.LEAVES:
        properties[leaf] = {**leaves[leaf], "description": LEAF_HELP[leaf]}
    defs["Condition"] = {
        "type": "object",
        "description": "One condition: all, any, not, or one test such as days_since or count.",
        "properties": properties,
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
    }
    # Bands are fixed words; the models accept any text, the schema can be exact.
    for leaf in LEAF_MODELS:
        for key, prop in defs[f"Condition_{leaf}"]["properties"].items():
            if key in KEY_HELP and "description" not in prop:
                prop["description"] = KEY_HELP[key]
    account = defs["Condition_account"]["properties"]
    account["band"] = _one_or_many({"enum": _BANDS})
    defs["Condition_score"]["properties"]["band"] = _one_or_many({"enum": _BANDS})
    account["metric"] = {"enum": ["active_users", "active_users_trend", "score"]}
    days_since = defs["Condition_days_since"]["properties"]
    days_since["event"] = {
        "type": "string",
        "description": "An event of the tracking plan, or any (any meaningful event).",
    }
    return defs


def file_schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    uses_conditions = False
    for name, sub in [("", schema), *defs.items()]:
        for key, prop in sub.get("properties", {}).items():
            help_text = FIELD_HELP.get((name, key))
            if help_text and "description" not in prop:
                prop["description"] = help_text
            if key in CONDITION_FIELDS and not ({"type", "$ref", "anyOf"} & set(prop)):
                description = prop.get("description") or FIELD_HELP.get((name, key))
                prop.clear()
                prop["$ref"] = "#/$defs/Condition"
                if description:
                    prop["description"] = description
                uses_conditions = True
    if uses_conditions:
        defs.update(condition_defs())
    if not defs:
        del schema["$defs"]
    _tidy(schema)
    return {"$schema": DRAFT, "title": title, **{k: v for k, v in schema.items() if k != "title"}}


def _tidy(node: Any, name: str | None = None) -> None:
    """Make pydantic's schema read as marketers write YAML.

    Durations are "7d", not ISO 8601; `is_`/`in_` are the models' spellings of `is`/`in`;
    "or null" alternatives of optional keys and generated titles are noise in an editor.
    """
    if isinstance(node, list):
        for item in node:
            _tidy(item)
        return
    if not isinstance(node, dict):
        return
    node.pop("title", None)
    if node.get("format") == "duration":
        del node["format"]
        node.update(_DURATION)
        if isinstance(node.get("default"), str):
            node["default"] = format_duration(TypeAdapter(timedelta).validate_python(node["default"]))
    alternatives = node.get("anyOf")
    if isinstance(alternatives, list) and {"type": "null"} in alternatives and node.get("default", 0) is None:
        kept = [a for a in alternatives if a != {"type": "null"}]
        del node["default"]
        if len(kept) == 1:
            del node["anyOf"]
            node.update(kept[0])
        else:
            node["anyOf"] = kept
    properties = node.get("properties")
    if isinstance(properties, dict):
        renamed = {{"is_": "is", "in_": "in"}.get(k, k): v for k, v in properties.items()}
        node["properties"] = renamed
        if "required" in node:
            node["required"] = [{"is_": "is", "in_": "in"}.get(k, k) for k in node["required"]]
        for value in renamed.values():
            _tidy(value)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            _tidy(node[key])
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(node.get(key), list):
            _tidy(node[key])
    for sub in node.get("$defs", {}).values():
        _tidy(sub)


def rule_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, one per kind of rule file."""
    return {
        f"{Path(name).stem}.schema.json": file_schema(model, title)
        for name, (model, title) in SCHEMAS.items()
    }


def _schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def run_schema(args: argparse.Namespace) -> int:
    out: Path = args.out
    schemas = rule_schemas()
    if args.check:
        stale = [
            name
            for name, schema in schemas.items()
            if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != _schema_text(schema)
        ]
        for name in stale:
            print(f"{out / name}: out of date; run `nudge rules schema --out {out}`")
        if not stale:
            print(f"{out}: {len(schemas)} schemas up to date")
        return 1 if stale else 0
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas.items():
            (out / name).write_text(_schema_text(schema), encoding="utf-8")
    except OSError as exc:
        print(f"{out}: cannot write: {exc.strerror}", file=sys.stderr)
        return 1
    for name in schemas:
        print(f"wrote {out / name}")
    return 0


def _trait_problems(doc: YamlDoc, exc: ValidationError, where: Loc, label: str) -> list[RuleProblem]:
    """A case's invalid traits as file:line problems (the model's own field comes first in loc)."""
    problems = []
    for err in exc.errors():
        field_loc = tuple(p for p in err["loc"] if isinstance(p, str | int))[1:]
        problems.append(
            doc.problem((*where, *field_loc), f"{label} {'.'.join(map(str, field_loc))}: {err['msg']}")
        )
    return problems
