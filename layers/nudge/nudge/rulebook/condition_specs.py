"""The condition specs marketers write in YAML (one pydantic model per leaf, with its JSON Schema),
and the names of the leaves and combinators; rulebook.conditions parses them into a tree."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from nudge.model.durations import Duration


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Bounds(Spec):
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _window(self) -> Bounds:
        if self.at_least is None and self.at_most is None:
            raise ValueError("give at_least, at_most or both")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError(
                f"impossible window: at_least {self.at_least:g} is above at_most {self.at_most:g}"
            )
        if (self.at_least or 0) < 0 or (self.at_most or 0) < 0:
            raise ValueError("bounds cannot be negative")
        return self


# `where: {feature: sso}` or `where: {feature: [sso, audit_log]}` (any of): one property of the
# event, a dimension in the tracking plan.
WhereValue = str | int | float | bool
Where = dict[str, WhereValue | list[WhereValue]]


class DaysSinceSpec(Bounds):
    event: str | None = None
    milestone: str | None = None
    where: Where | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> DaysSinceSpec:
        if (self.event is None) == (self.milestone is None):
            raise ValueError("name exactly one of event or milestone")
        return self


class CountSpec(Bounds):
    event: str
    within: Duration
    where: Where | None = None


class SumSpec(Bounds):
    event: str
    property: str
    within: Duration | None = None
    # Taken so the parser can say why it is refused: sums are kept per event, not per value.
    where: Where | None = None


class ActiveDaysSpec(Bounds):
    within: Duration


class FeatureSpec(Spec):
    name: str
    is_: Literal["never", "tried", "habitual"] | list[Literal["never", "tried", "habitual"]]

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, populate_by_name=True)

    def __init__(self, **data: Any) -> None:
        if "is" in data:
            data["is_"] = data.pop("is")
        super().__init__(**data)


class ValueSpec(Spec):
    equals: str | float | bool | None = None
    in_: list[str | float] | None = None
    not_equals: str | float | bool | None = None
    at_least: float | None = None
    at_most: float | None = None
    exists: bool | None = None

    def __init__(self, **data: Any) -> None:
        if "in" in data:
            data["in_"] = data.pop("in")
        super().__init__(**data)

    @model_validator(mode="after")
    def _something(self) -> ValueSpec:
        given = [
            k
            for k in ("equals", "in_", "not_equals", "at_least", "at_most", "exists")
            if getattr(self, k) is not None
        ]
        if not given:
            raise ValueError("say what to compare: equals, in, not_equals, at_least, at_most or exists")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError(
                f"impossible window: at_least {self.at_least:g} is above at_most {self.at_most:g}"
            )
        return self


class TraitSpec(ValueSpec):
    name: str


class LastSpec(ValueSpec):
    event: str
    property: str
    where: Where | None = None  # refused by the parser, like SumSpec's


class AccountSpec(ValueSpec):
    trait: str | None = None
    metric: Literal["active_users", "active_users_trend", "score"] | None = None
    band: str | list[str] | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> AccountSpec:
        if sum(x is not None for x in (self.trait, self.metric, self.band)) != 1:
            raise ValueError("name exactly one of trait, metric or band")
        return self

    @model_validator(mode="before")
    @classmethod
    def _band_needs_no_comparison(cls, data: Any) -> Any:
        if isinstance(data, dict) and "band" in data and len(data) == 1:
            return {**data, "exists": True}
        return data


class ScoreSpec(Spec):
    band: str | list[str] | None = None
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _something(self) -> ScoreSpec:
        if self.band is None and self.at_least is None and self.at_most is None:
            raise ValueError("give band, at_least or at_most")
        return self


class WeeksBelowSpec(Spec):
    metric: Literal["sessions", "active_days"]
    threshold: int
    weeks: int

    @model_validator(mode="after")
    def _sane(self) -> WeeksBelowSpec:
        if self.threshold < 1:
            raise ValueError("threshold must be at least 1 (nothing is below 0)")
        if not 1 <= self.weeks <= 12:
            raise ValueError("weeks must be between 1 and 12 (the weeks of history kept)")
        return self


class TrendSpec(Spec):
    metric: Literal["sessions", "active_days"]
    direction: Literal["down", "up"]
    by_at_least: float

    @model_validator(mode="before")
    @classmethod
    def _percent(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("by_at_least"), str):
            return {**data, "by_at_least": data["by_at_least"].strip().rstrip("%")}
        return data

    @model_validator(mode="after")
    def _sane(self) -> TrendSpec:
        if not 0 < self.by_at_least <= (100 if self.direction == "down" else 10_000):
            raise ValueError("by_at_least is a percentage: above 0, and at most 100 for down")
        return self


class DidSpec(Spec):
    event: str
    but_not: str
    within: Duration


LEAVES = (
    "segment",
    "milestone",
    "days_since",
    "count",
    "sum",
    "last",
    "active_days",
    "feature",
    "trait",
    "account",
    "score",
    "weeks_below",
    "trend",
    "did",
    "age",
    "frequency",
)

COMBINATORS = ("all", "any", "not")
