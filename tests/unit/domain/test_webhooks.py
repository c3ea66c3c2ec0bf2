"""A Slack message of a case: readable, safe from mentions and links smuggled in traits, and
within Slack's limits whatever the case holds."""

from __future__ import annotations

from datetime import UTC, date, datetime

from nudge.domain.webhooks import SLACK_TEXT_MAX, explain_command, slack_message
from nudge.model.channels import EscalationCase, WeekUsage

AT = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def case(**changes: object) -> EscalationCase:
    base = EscalationCase(
        case_id="c1",
        account_id="acme",
        account_name="Acme",
        plan="business",
        mrr=12500.0,
        seats=40,
        cs_owner="Dana",
        score=12.5,
        band="high",
        usage_trend=[WeekUsage(week_start=date(2025, 2, 24), active_users=3, sessions=9)],
        rule="at_risk_account",
        reason="A user of a high-value account is declining.",
        facts={"lifecycle segment": "declining"},
        recommended_next_step="Call the owner.",
        user_id="user 7",
        opened_at=AT,
    )
    return base.model_copy(update=changes)


def texts(body: dict[str, object]) -> list[str]:
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            # plain_text (the header) is shown as is: Slack reads no mention or link in it.
            if isinstance(node.get("text"), str) and node.get("type") != "plain_text":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body)
    return found


def test_the_message_names_account_mrr_why_what_the_user_did_and_the_explain_command() -> None:
    body = slack_message(case(), {"event": "report_exported", "at": AT.isoformat()})
    everything = "\n".join(texts(body))
    assert body["text"] == "At-risk account: Acme ($12,500/month)"
    for part in ("Dana", "declining", "report_exported", "Call the owner.", "2025-02-24: 3 active"):
        assert part in everything
    assert "nudge rules explain 'user 7' --events" in everything  # the id quoted for a shell
    assert explain_command(case()) in everything


def test_a_trait_cannot_mention_the_channel_or_make_a_link_and_no_text_passes_slacks_limit() -> None:
    body = slack_message(
        case(account_name="<!channel> <https://evil.example|click>", reason="x" * 5000), None
    )
    everything = texts(body)
    assert not any("<!channel>" in t or "<https://" in t for t in everything)
    assert "&lt;!channel&gt;" in body["text"]
    assert max(len(t) for t in everything) <= SLACK_TEXT_MAX


def test_the_header_shows_the_account_name_as_written() -> None:
    body = slack_message(case(account_name="AT&T <Labs>"), None)
    header = body["blocks"][0]["text"]
    assert header["type"] == "plain_text"
    assert header["text"].startswith("At-risk account: AT&T <Labs> (")
    assert "AT&amp;T &lt;Labs&gt;" in body["text"]  # the mrkdwn fallback stays escaped
