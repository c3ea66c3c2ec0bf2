"""Rule tests (rules/tests/*.yaml): the case file's models, and loading cases as the Segment
messages a product would have sent.

A case gives one user's events at times like -3d (before the case's `at`), their traits and
account, and says what must hold: the segment, the rules that must and must not fire, score
bands. `load_cases` checks each case's names against the rule set (file:line problems, in the
marketer's words) and turns it into messages (`LoadedCase`), which the rule-test service replays
through ingest and judges.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from nudge.model.durations import Duration
from nudge.model.messages import Group, Identify, Message, Track
from nudge.rulebook.ruleset import RuleSet
from nudge.rulebook.yamlfile import (
    Loc,
    RuleFileError,
    RuleProblem,
    YamlDoc,
    did_you_mean,
    display_path,
    load_yaml,
    validate,
)

TESTS_DIR = "tests"
CASE_USER = "test-user"
# A Wednesday noon: mid-week and mid-day, so "-3d" never straddles a question of which day it is.
DEFAULT_CASE_AT = datetime(2026, 6, 17, 12, tzinfo=UTC)
_RELATIVE = re.compile(r"^-((?:\d+[wdhm])+)$")
_RELATIVE_PART = re.compile(r"(\d+)([wdhm])")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}
WHEN_HELP = "write -3d, -2w, -36h, -3d12h, now, or an ISO time like 2026-06-14T09:00:00Z"
Band = Literal["high", "mid", "low"]


def _aware(value: datetime) -> datetime:
    # A time without an offset is UTC, as Segment reads timestamps.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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


class ExpectSend(_CaseModel):
    template: str = Field(description="The message's template.")
    channel: str | None = Field(
        default=None,
        description="The channel it goes by (of a [push, email] list, the one the user can receive).",
    )
    step: str | None = Field(default=None, description="The journey step that sent it.")


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
    journey: str | None = Field(
        default=None,
        description="A journey (journeys/): the case runs over time, from the first event to its `at`.",
    )
    path: list[str] | None = Field(
        default=None, description="The journey's steps the user reached, in order (needs journey)."
    )
    sends: list[ExpectSend] | None = Field(
        default=None, description="The journey's messages, in order; [] for none (needs journey)."
    )
    ended: Literal["converted", "exited", "completed", "holdout"] | None = Field(
        default=None, description="How the journey ended by the case's `at` (needs journey)."
    )

    @model_validator(mode="after")
    def _something(self) -> Expect:
        single = (self.segment, self.band, self.score, self.account_band, self.account_score)
        journey = (self.path, self.sends, self.ended)
        if self.journey is None and any(v is not None for v in journey):
            raise ValueError("path, sends and ended are a journey's: name it, e.g. journey: declining_rescue")
        if self.journey is not None and all(v is None for v in journey):
            raise ValueError("say what to expect of the journey: path, sends or ended")
        if (
            self.journey is None
            and all(v is None for v in single)
            and not (self.fires or self.not_fires or self.escalates)
        ):
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
        display = display_path(path.parent, path.name)
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
        # push_token: an address the product sets (a case's user with a device), not a trait rules read
        known("user trait", trait, rules.plan.user_traits | {"push_token"}, (*loc, "traits", trait))
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
    if expect.journey is not None:
        _check_journey_names(doc, loc, expect, rules, problems)
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


def _check_journey_names(
    doc: YamlDoc, loc: tuple[str | int, ...], expect: Expect, rules: RuleSet, problems: list[RuleProblem]
) -> None:
    journeys = {j.id: j for j in rules.journeys}
    journey = journeys.get(expect.journey or "")
    if journey is None:
        name = expect.journey or ""
        problems.append(
            doc.problem(
                (*loc, "expect", "journey"), f"unknown journey '{name}'{did_you_mean(name, journeys)}"
            )
        )
        return
    for i, step in enumerate(expect.path or []):
        if step not in journey.steps:
            problems.append(
                doc.problem(
                    (*loc, "expect", "path", i),
                    f"journey '{journey.id}' has no step '{step}'{did_you_mean(step, journey.steps)}",
                )
            )
    for i, send in enumerate(expect.sends or []):
        if send.template not in rules.templates:
            problems.append(
                doc.problem(
                    (*loc, "expect", "sends", i, "template"),
                    f"unknown template '{send.template}'{did_you_mean(send.template, rules.templates)}",
                )
            )
        if send.step is not None and send.step not in journey.steps:
            problems.append(
                doc.problem(
                    (*loc, "expect", "sends", i, "step"),
                    f"journey '{journey.id}' has no step '{send.step}'"
                    f"{did_you_mean(send.step, journey.steps)}",
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


def _trait_problems(doc: YamlDoc, exc: ValidationError, where: Loc, label: str) -> list[RuleProblem]:
    """A case's invalid traits as file:line problems (the model's own field comes first in loc)."""
    problems = []
    for err in exc.errors():
        field_loc = tuple(p for p in err["loc"] if isinstance(p, str | int))[1:]
        problems.append(
            doc.problem((*where, *field_loc), f"{label} {'.'.join(map(str, field_loc))}: {err['msg']}")
        )
    return problems
