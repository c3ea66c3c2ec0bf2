"""The tracking plan loader: the shipped files load; broken ones are refused with file:line."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from nudge.domain.verdicts import ADDRESS_TRAITS
from nudge.rulebook.plan import load_plan
from nudge.rulebook.yamlfile import RuleFileError


def test_the_shipped_plan_describes_the_sample_product() -> None:
    plan = load_plan(Path("rules"))
    assert plan.session_gap == timedelta(minutes=30)
    assert {"login", "page_viewed"}.isdisjoint(plan.meaningful)
    assert {"signed_up", "setup_completed", "project_created", "teammate_invited"} <= plan.meaningful
    assert plan.events["premium_feature_attempted"].premium
    assert plan.milestones["activated"].all == ["setup_completed", "project_created", "teammate_invited"]


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree("rules", target)
    return target


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _error(rules: Path) -> str:
    with pytest.raises(RuleFileError) as caught:
        load_plan(rules)
    return str(caught.value)


def test_an_unknown_feature_is_named_with_its_line_and_a_suggestion(rules_copy: Path) -> None:
    plan = rules_copy / "tracking-plan.yaml"
    _replace(plan, "feature: reporting", "feature: reportng")
    message = _error(rules_copy)
    assert f"tracking-plan.yaml:{_line_of(plan, 'feature: reportng')}:" in message
    assert "did you mean 'reporting'" in message


def test_a_milestone_naming_an_unknown_event_is_refused(rules_copy: Path) -> None:
    milestones = rules_copy / "milestones.yaml"
    _replace(
        milestones,
        "all: [setup_completed, project_created, teammate_invited]",
        "all: [setup_completed, project_create, teammate_invited]",
    )
    message = _error(rules_copy)
    assert f"milestones.yaml:{_line_of(milestones, 'project_create,')}:" in message
    assert "did you mean 'project_created'" in message


def test_a_yaml_syntax_error_names_the_line(rules_copy: Path) -> None:
    plan = rules_copy / "tracking-plan.yaml"
    _replace(plan, "  login:\n", "  login:\n   bad: [unclosed\n")
    message = _error(rules_copy)
    assert "tracking-plan.yaml:" in message
    assert "YAML syntax error" in message


def test_a_wrong_type_and_an_unknown_key_are_refused(rules_copy: Path) -> None:
    plan = rules_copy / "tracking-plan.yaml"
    _replace(
        plan,
        "    meaningful: true\n    feature: setup",
        "    meaningful: sometimes\n    feature: setup\n    colour: blue",
    )
    message = _error(rules_copy)
    assert f":{_line_of(plan, 'meaningful: sometimes')}: events.setup_completed.meaningful" in message
    assert f":{_line_of(plan, 'colour: blue')}: events.setup_completed.colour: unknown key" in message


def test_a_bad_policy_and_a_bad_duration_are_refused(rules_copy: Path) -> None:
    plan = rules_copy / "tracking-plan.yaml"
    _replace(plan, "session_gap: 30m", "session_gap: half an hour")
    _replace(plan, "unplanned_events: flag", "unplanned_events: ignore")
    message = _error(rules_copy)
    assert "is not a duration" in message
    assert "unplanned_events" in message


def test_a_missing_plan_file_is_reported(tmp_path: Path) -> None:
    assert "cannot read file" in _error(tmp_path)


def test_email_phone_and_consent_are_always_sensitive_and_the_plan_may_add_more(rules_copy: Path) -> None:
    # Given a plan that marks a custom user trait and an account trait sensitive
    plan_file = rules_copy / "tracking-plan.yaml"
    plan_file.write_text(
        plan_file.read_text()
        + "\ntraits:\n  user:\n    birthday: date of birth\n  sensitive:\n    user: [birthday]\n    account: [tax_id]\n"
    )

    # When it is loaded
    plan = load_plan(rules_copy)

    # Then client keys need a user token for those, besides the built-in ones
    assert plan.sensitive_user_traits == {"email", "phone", "push_token", "consent", "birthday"}
    assert plan.sensitive_account_traits == {"cs_owner", "tax_id"}
    assert load_plan(Path("rules")).sensitive_user_traits == {"email", "phone", "push_token", "consent"}


def test_every_channel_address_is_sensitive() -> None:
    # A client key setting anyone's address would reroute their messages to the sender.
    assert set(ADDRESS_TRAITS.values()) <= load_plan(Path("rules")).sensitive_user_traits


# --- event properties -------------------------------------------------------------------------


def test_the_shipped_plan_keeps_the_premium_feature_page_names_and_revenue() -> None:
    plan = load_plan(Path("rules"))
    feature = plan.kept_of["premium_feature_attempted"]["feature"]
    assert (feature.type, feature.dimension, feature.last) == ("string", True, True)
    assert plan.kept_of["page_viewed"]["name"].dimension
    assert plan.kept_of["screen_viewed"]["name"].dimension
    assert plan.kept_of["invoice_paid"]["revenue"].sum
    assert "login" not in plan.properties_of  # no declared properties: no entry at all
    assert plan.property_errors == "reject"


def test_sensitive_properties_are_listed_per_event(rules_copy: Path) -> None:
    plan_file = rules_copy / "tracking-plan.yaml"
    _replace(
        plan_file,
        "      required_plan:\n",
        "      card_last4:\n        type: string\n        sensitive: true\n      required_plan:\n",
    )
    plan = load_plan(rules_copy)
    assert plan.sensitive_properties == {"premium_feature_attempted": frozenset({"card_last4"})}


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("        sum: true             #", "        type_: x\n        sum: true             #", "unknown key"),
        ("        type: number\n        description: What", "        type: string\n        description: What",
         "sum: true needs a number or integer property"),
        ("enum: [free, team, business]", "enum: [free, 2, business]", "enum value 2 is not a string"),
        ("        type: string\n        description: The page's", "        type: number\n        description: The page's",
         "a number cannot be a dimension"),
        ("      required_plan:\n", "      card:\n        type: string\n        sensitive: true\n        required: true\n      required_plan:\n",
         "a sensitive property cannot be required"),
    ],
)  # fmt: skip
def test_property_declarations_that_cannot_work_are_refused_at_their_line(
    rules_copy: Path, old: str, new: str, says: str
) -> None:
    plan_file = rules_copy / "tracking-plan.yaml"
    _replace(plan_file, old, new)
    message = _error(rules_copy)
    assert "tracking-plan.yaml:" in message
    assert says in message


def test_more_dimensions_than_the_documented_cap_are_refused(rules_copy: Path) -> None:
    plan_file = rules_copy / "tracking-plan.yaml"
    many = "".join(f"      d{i}:\n        type: string\n        dimension: true\n" for i in range(10))
    _replace(plan_file, "      required_plan:\n", many + "      required_plan:\n")
    message = _error(rules_copy)
    assert "at most 10 properties may be dimensions" in message
    assert message.count("at most 10 properties") == 3  # 13 in all: the three past the cap
