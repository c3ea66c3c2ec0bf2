"""The triggering event a template reads: which event, which property values, rendered safely."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nudge.conditions.tree import Subject
from nudge.domain.evaluate import evaluate
from nudge.domain.fold import fold
from nudge.domain.render import render
from nudge.domain.trigger import last_values, trigger_of
from nudge.model.messages import Identify, Message, Track
from nudge.rulebook.loader import load_rules
from nudge.rulebook.templates import TemplateFile
from tests.shipped import ONE_SHOT_DIR

RULES = load_rules(ONE_SHOT_DIR)
NOW = datetime(2026, 6, 17, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def t(event: str, days_ago: float, mid: str, **properties: object) -> Track:
    return Track(
        userId="u", event=event, timestamp=NOW - days_ago * DAY, messageId=mid, properties=properties
    )


def power_user(*extra: Message) -> list[Message]:
    messages: list[Message] = [
        t("signed_up", 50, "s"),
        t("setup_completed", 50, "sc"),
        t("teammate_invited", 49, "ti"),
    ]
    messages += [t("project_created", 49 - i, f"p{i}") for i in range(48)]
    messages.append(
        Identify.model_validate(
            {"userId": "u", "traits": {"plan": "free"}, "timestamp": NOW - 50 * DAY, "messageId": "i"}
        )
    )
    return messages + list(extra)


def test_the_upgrade_message_names_the_premium_feature_the_user_tried() -> None:
    state = fold(
        None, "u", power_user(t("premium_feature_attempted", 6, "pf", feature="sso")), RULES.plan, NOW
    )
    [decision] = [
        d for d in evaluate(RULES, state, None, None, NOW).decisions if d.rule == "upgrade_power_user"
    ]
    assert decision.trigger is not None
    assert decision.trigger.event == "premium_feature_attempted"
    assert decision.trigger.properties == {"feature": "sso"}
    context = {
        "user": state.trait_values(),
        "links": {"upgrade": "https://example.com/upgrade"},
        "trigger": decision.trigger.model_dump(mode="json"),
        "last": last_values(state),
    }
    rendered = render(RULES.templates["upgrade_offer"], context)
    assert rendered.subject == "You tried SSO: it comes with the next plan"
    assert "You tried SSO, which your free plan doesn't include." in rendered.text
    assert "<p>You tried SSO," in rendered.html


def test_the_trigger_is_the_newest_event_the_condition_names_with_its_filtered_value() -> None:
    state = fold(
        None,
        "u",
        [
            t("premium_feature_attempted", 3, "a", feature="sso"),
            t("premium_feature_attempted", 1, "b", feature="audit_log"),
            t("page_viewed", 2, "c", name="Pricing"),
        ],
        RULES.plan,
        NOW,
    )
    plain = trigger_of([Subject("page_viewed"), Subject("premium_feature_attempted")], state)
    assert plain is not None
    assert (plain.event, plain.properties) == ("premium_feature_attempted", {"feature": "audit_log"})
    sso = trigger_of([Subject("premium_feature_attempted", ("feature", frozenset({"sso"})))], state)
    assert sso is not None
    assert (sso.properties, sso.at) == ({"feature": "sso"}, NOW - 3 * DAY)
    assert trigger_of([Subject("login")], state) is None


def test_a_property_value_is_escaped_in_html_and_cleaned_in_text() -> None:
    template = TemplateFile(
        subject="Seen {{ trigger.properties.name }}",
        text="{{ trigger.properties.name }} / {{ last.invoice_paid.plan }}",
        html="<p>{{ trigger.properties.name }}</p>",
    )
    context = {
        "trigger": {"event": "page_viewed", "properties": {"name": "<script>x</script>\r\nBcc: a@b.c"}},
        "last": {"invoice_paid": {"plan": "<b>team</b>"}},
    }
    rendered = render(template, context)
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    assert "\n" not in rendered.subject
    assert "\r" not in rendered.text
    assert "<b>team</b>" in rendered.text  # text is text; only html escapes
