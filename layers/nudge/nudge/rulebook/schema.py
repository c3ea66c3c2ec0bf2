"""JSON Schemas of the rule files, generated from their pydantic models, so editors complete and
check them (`nudge rules schema` writes them to rules/schema/).

pydantic's schemas are reshaped to read as marketers write YAML (`_tidy`): durations as "7d",
`is`/`in` rather than the models' `is_`/`in_`, no generated titles. Condition fields (`when`,
`escalate_when`) point at one schema of the condition language (`condition_defs`), checked
against the parser's leaves so a new condition cannot be forgotten.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from nudge.model.durations import format_duration
from nudge.rulebook import condition_specs as specs
from nudge.rulebook.cases import CasesFile
from nudge.rulebook.destinations import DESTINATIONS_FILE, DestinationsFile
from nudge.rulebook.guardrails import GUARDRAILS_FILE, GuardrailsFile
from nudge.rulebook.journey_specs import JourneyFile
from nudge.rulebook.plan import MILESTONES_FILE, PLAN_FILE, MilestonesFile, TrackingPlanFile
from nudge.rulebook.ruleset import (
    SCORING_FILE,
    SEGMENTS_FILE,
    TRIGGERS_FILE,
    ScoringFile,
    SegmentsFile,
    TriggersFile,
)
from nudge.rulebook.templates import TemplateFile

DRAFT = "http://json-schema.org/draft-07/schema#"
CONDITION_FIELDS = ("when", "escalate_when")
SCHEMAS: dict[str, tuple[type[BaseModel], str]] = {
    PLAN_FILE: (TrackingPlanFile, "Nudge tracking plan: the product's events, features and traits"),
    MILESTONES_FILE: (MilestonesFile, "Nudge milestones: moments reached by doing every listed event"),
    SEGMENTS_FILE: (SegmentsFile, "Nudge lifecycle segments: a user is in the first that matches"),
    SCORING_FILE: (ScoringFile, "Nudge scoring: weighted signals, score bands for users and accounts"),
    TRIGGERS_FILE: (TriggersFile, "Nudge triggers: when to send which message (or escalate)"),
    GUARDRAILS_FILE: (GuardrailsFile, "Nudge guardrails: caps, quiet hours, consent, holdouts, sender"),
    DESTINATIONS_FILE: (
        DestinationsFile,
        "Nudge destinations: webhooks and Slack (secrets in SSM, never here)",
    ),
    "journey.yaml": (JourneyFile, "Nudge journey: entry, steps, goal and exits of a multi-step sequence"),
    "template.yaml": (TemplateFile, "Nudge message template (Jinja2, autoescaped)"),
    "tests.yaml": (CasesFile, "Nudge rule tests: given events, expect segments and rules"),
}
# Help shown by editors for fields the models leave undescribed.
FIELD_HELP: dict[tuple[str, str], str] = {
    ("TriggerSpec", "kind"): "onboarding, rescue, upgrade or escalation.",
    (
        "TriggerSpec",
        "action",
    ): "email, push, sms, webhook (to a destination) or escalate (hand the account to customer success).",
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
    "count": "How many times an event happened within a window (whole days, 1d to 12w); where: counts "
    "only those with a value of a dimension, e.g. where: {feature: sso}.",
    "sum": "The sum of a property the tracking plan sums (sum: true), e.g. invoice_paid revenue: within a "
    "window, or lifetime without within.",
    "last": "The latest value of a property the tracking plan keeps (last: true): equals, in, not_equals, "
    "at_least, at_most or exists.",
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
    "sum": specs.SumSpec,
    "last": specs.LastSpec,
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
    "where": "Only events with this value (or one of a list) of one property the tracking plan keeps as "
    "a dimension, e.g. {feature: sso}.",
    "property": "A property of the event, declared in the tracking plan.",
}
_BOUNDS = [{"required": ["at_least"]}, {"required": ["at_most"]}]
LEAF_RULES: dict[str, dict[str, Any]] = {
    "days_since": {
        "allOf": [{"oneOf": [{"required": ["event"]}, {"required": ["milestone"]}]}, {"anyOf": _BOUNDS}]
    },
    "count": {"anyOf": _BOUNDS},
    # Sums and last values are kept per event, not per value: where: is lint's error, not a hint.
    "sum": {"anyOf": _BOUNDS, "not": {"required": ["where"]}},
    "last": {
        "anyOf": [{"required": [k]} for k in ("equals", "in", "not_equals", "at_least", "at_most", "exists")],
        "not": {"required": ["where"]},
    },
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
