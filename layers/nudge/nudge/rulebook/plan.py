"""The tracking plan (rules/tracking-plan.yaml) and milestones (rules/milestones.yaml)."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nudge.model.durations import Duration
from nudge.model.limits import DIMENSION_VALUES_KEPT, DIMENSIONS_PER_PLAN
from nudge.model.properties import PropertySpec
from nudge.rulebook.yamlfile import (
    RuleFileError,
    RuleProblem,
    YamlDoc,
    did_you_mean,
    display_path,
    load_yaml,
    validate,
)

PLAN_FILE = "tracking-plan.yaml"
MILESTONES_FILE = "milestones.yaml"
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"

UnplannedPolicy = Literal["accept", "flag", "reject"]
PropertyPolicy = Literal["flag", "reject"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class EventSpec(_Strict):
    description: str = ""
    meaningful: bool = Field(default=False, description="Counts as real use: sessions, recency, activity.")
    feature: str | None = Field(default=None, description="The product feature this event is use of.")
    premium: bool = Field(default=False, description="A premium (paid-plan) action.")
    properties: dict[str, PropertySpec] = Field(
        default_factory=dict,
        description="Declared properties: type, enum, required, sensitive, and what rules may read "
        "(dimension, sum, last). Properties not listed are accepted and ignored.",
    )


class SensitiveTraits(_Strict):
    user: list[str] = Field(
        default_factory=list, description="User traits to guard besides email, phone, consent."
    )
    account: list[str] = Field(default_factory=list, description="Account traits to guard.")


class TraitsSpec(_Strict):
    user: dict[str, str] = Field(default_factory=dict, description="Custom user traits -> description.")
    account: dict[str, str] = Field(default_factory=dict, description="Custom account traits -> description.")
    sensitive: SensitiveTraits = Field(
        default_factory=SensitiveTraits,
        description=(
            "Traits a client (browser or app) key may set only with a valid user token; "
            "email, phone and consent always are."
        ),
    )


# Traits Nudge knows without being told (Segment's reserved traits and what Nudge itself reads).
BUILTIN_USER_TRAITS = frozenset(
    {
        "email",
        "phone",
        "plan",
        "timezone",
        "locale",
        "consent",
        "preferred_channel",  # the channel (or list) the user would rather hear on: channel choice
        "name",
        "first_name",
        "last_name",
        "created_at",
    }
)
# What a client key may set only with a user token, whatever the plan says: who to reach (every
# channel's address) and whether; for an account, who at CS its escalations go to.
SENSITIVE_USER_TRAITS = frozenset({"email", "phone", "push_token", "consent"})
SENSITIVE_ACCOUNT_TRAITS = frozenset({"cs_owner"})
BUILTIN_ACCOUNT_TRAITS = frozenset(
    {"name", "plan", "mrr", "seats", "cs_owner", "industry", "employees", "created_at"}
)


class TrackingPlanFile(_Strict):
    session_gap: Duration = Field(
        default=timedelta(minutes=30), description="A pause longer than this starts a new session."
    )
    unplanned_events: UnplannedPolicy = Field(
        default="flag", description="Events not listed below: accept, flag (accept and warn) or reject."
    )
    property_errors: PropertyPolicy = Field(
        default="reject",
        description="A declared property of the wrong type, outside its enum or missing when required: "
        "reject (400, naming event, property and expected type) or flag (accept, warn, and keep "
        "nothing of that property).",
    )
    features: dict[str, str] = Field(default_factory=dict, description="Feature name -> description.")
    events: dict[str, EventSpec]
    traits: TraitsSpec = Field(default_factory=TraitsSpec, description="Custom traits rules may use.")

    @field_validator("session_gap")
    @classmethod
    def _positive_gap(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0) or value > timedelta(days=1):
            raise ValueError("session_gap must be between 1s and 1d, e.g. 30m")
        return value


class MilestoneSpec(_Strict):
    description: str = ""
    all: list[str] = Field(min_length=1, description="Reached when every one of these events has happened.")


class MilestonesFile(_Strict):
    milestones: dict[str, MilestoneSpec]


class TrackingPlan(_Strict):
    """What the fold needs to know about events: the plan and the milestones together."""

    session_gap: timedelta
    unplanned_events: UnplannedPolicy
    property_errors: PropertyPolicy = "reject"
    features: dict[str, str]
    events: dict[str, EventSpec]
    milestones: dict[str, MilestoneSpec] = Field(default_factory=dict)
    traits: TraitsSpec = Field(default_factory=TraitsSpec)

    @property
    def user_traits(self) -> frozenset[str]:
        return BUILTIN_USER_TRAITS | frozenset(self.traits.user)

    @property
    def account_traits(self) -> frozenset[str]:
        return BUILTIN_ACCOUNT_TRAITS | frozenset(self.traits.account)

    @property
    def sensitive_user_traits(self) -> frozenset[str]:
        return SENSITIVE_USER_TRAITS | frozenset(self.traits.sensitive.user)

    @property
    def sensitive_account_traits(self) -> frozenset[str]:
        return SENSITIVE_ACCOUNT_TRAITS | frozenset(self.traits.sensitive.account)

    @cached_property
    def meaningful(self) -> frozenset[str]:
        return frozenset(name for name, spec in self.events.items() if spec.meaningful)

    @cached_property
    def feature_of(self) -> dict[str, str]:
        return {name: spec.feature for name, spec in self.events.items() if spec.feature}

    def is_planned(self, event: str) -> bool:
        return event in self.events

    @cached_property
    def properties_of(self) -> dict[str, dict[str, PropertySpec]]:
        """Declared properties per event, only for events that declare some: ingest checks a
        message with one dict lookup when its event declares none."""
        return {name: dict(spec.properties) for name, spec in self.events.items() if spec.properties}

    @cached_property
    def kept_of(self) -> dict[str, dict[str, PropertySpec]]:
        """Per event, the properties the usage state keeps (dimension, sum or last); the fold's
        one lookup per event."""
        kept = {
            name: {prop: p for prop, p in props.items() if p.kept}
            for name, props in self.properties_of.items()
        }
        return {name: props for name, props in kept.items() if props}

    @cached_property
    def sensitive_properties(self) -> dict[str, frozenset[str]]:
        """Per event, the names of its properties declared `sensitive` (events with none left out)."""
        found = {
            name: frozenset(prop for prop, p in props.items() if p.sensitive)
            for name, props in self.properties_of.items()
        }
        return {name: props for name, props in found.items() if props}


def _check_names(doc: YamlDoc, section: str, names: list[str], problems: list[RuleProblem]) -> None:
    for name in names:
        if not re.match(NAME_PATTERN, name):
            problems.append(
                doc.problem(
                    (section, name),
                    f"'{name}' is not a valid name; use lower_snake_case (letters, digits, underscores)",
                )
            )


def load_plan(rules_dir: Path) -> TrackingPlan:
    """Load and cross-check the tracking plan and milestones; raise RuleFileError naming file:line."""
    plan_doc = load_yaml(rules_dir / PLAN_FILE, display_path(rules_dir, PLAN_FILE))
    plan_file = validate(plan_doc, TrackingPlanFile)
    problems: list[RuleProblem] = []
    _check_names(plan_doc, "events", list(plan_file.events), problems)
    _check_names(plan_doc, "features", list(plan_file.features), problems)
    for name, spec in plan_file.events.items():
        if spec.feature is not None and spec.feature not in plan_file.features:
            problems.append(
                plan_doc.problem(
                    ("events", name, "feature"),
                    f"event '{name}' names unknown feature '{spec.feature}'"
                    + (did_you_mean(spec.feature, plan_file.features) or "; list it under features:"),
                )
            )
    dimensions = [
        (name, prop)
        for name, spec in plan_file.events.items()
        for prop, p in spec.properties.items()
        if p.dimension
    ]
    for name, prop in dimensions[DIMENSIONS_PER_PLAN:]:
        problems.append(
            plan_doc.problem(
                ("events", name, "properties", prop, "dimension"),
                f"at most {DIMENSIONS_PER_PLAN} properties may be dimensions in all (each keeps up to "
                f"{DIMENSION_VALUES_KEPT} values per user); keep '{prop}' of '{name}' as a last value "
                "instead",
            )
        )
    milestones: dict[str, MilestoneSpec] = {}
    milestones_path = rules_dir / MILESTONES_FILE
    if milestones_path.exists():
        ms_doc = load_yaml(milestones_path, display_path(rules_dir, MILESTONES_FILE))
        milestones = validate(ms_doc, MilestonesFile).milestones
        _check_names(ms_doc, "milestones", list(milestones), problems)
        for name, ms in milestones.items():
            for index, event in enumerate(ms.all):
                if event not in plan_file.events:
                    problems.append(
                        ms_doc.problem(
                            ("milestones", name, "all", index),
                            f"milestone '{name}' needs unknown event '{event}'"
                            f"{did_you_mean(event, plan_file.events)}",
                        )
                    )
    if problems:
        raise RuleFileError(problems)
    return TrackingPlan(
        session_gap=plan_file.session_gap,
        unplanned_events=plan_file.unplanned_events,
        property_errors=plan_file.property_errors,
        features=plan_file.features,
        events=plan_file.events,
        milestones=milestones,
        traits=plan_file.traits,
    )
