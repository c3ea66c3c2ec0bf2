"""SES feedback on the local stack: mail to SES's mailbox-simulator addresses comes back as the
configuration set's events (tools/local/mailbox_simulator), through the feedback queue and the real
feedback function, onto the suppression list, the ledger and the report."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from nudge.tools.report.markup import pct
from nudge.tools.report.sections import FEEDBACK_RATES
from tests.e2e.test_actions_local import at_window_start, move_clock, outbox, signed_up_with_traits, unheld

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

pytestmark = [pytest.mark.e2e, pytest.mark.moves_clock]

SIMULATOR = "simulator.amazonses.com"


def finish_setup_entries(api: Api, user: str) -> list[dict[str, object]]:
    return [e for e in api.user(user)["ledger"] if e["rule"] == "finish_setup"]


def test_mail_to_the_bounce_simulator_is_suppressed_and_never_sent_again(api: Api, uid: str) -> None:
    # Given a stalled signup whose address is SES's bounce simulator
    uid = unheld(uid)
    at_window_start(api)
    address = f"bounce+{uid}@{SIMULATOR}"
    signed_up_with_traits(api, uid, email=address)
    # When finish_setup emails them (a day and a half later)
    move_clock(api, timedelta(hours=36))
    # Then the email went out once, and SES's bounce came back onto its ledger entry
    [sent] = outbox(api, uid)
    assert sent["to"] == address
    assert "bounced" in sent["feedback"]
    # When the rule fires again, every three days for the next two weeks
    move_clock(api, timedelta(days=10))
    # Then nothing more is sent: every later reminder is suppressed by the suppression list
    assert len(outbox(api, uid)) == 1
    later = finish_setup_entries(api, uid)[1:]
    assert later
    assert {(e["outcome"], e["outcome_reason"]) for e in later} == {("suppressed", "suppression_list")}


def test_a_complaint_stops_marketing_email_to_the_address(api: Api, uid: str) -> None:
    # Given a stalled signup at SES's complaint simulator
    uid = unheld(uid)
    at_window_start(api)
    signed_up_with_traits(api, uid, email=f"complaint+{uid}@{SIMULATOR}")
    # When finish_setup emails them, and then the reminders come due
    move_clock(api, timedelta(hours=36))
    [sent] = outbox(api, uid)
    assert {"delivered", "complained"} <= set(sent["feedback"])
    move_clock(api, timedelta(days=4))
    # Then the reminder is suppressed (transactional mail still goes: tests/integration/test_feedback_local.py)
    later = finish_setup_entries(api, uid)[1:]
    assert [(e["outcome"], e["outcome_reason"]) for e in later][:1] == [("suppressed", "suppression_list")]
    assert len(outbox(api, uid)) == 1


def test_the_report_shows_delivered_bounce_complaint_open_and_click_rates_per_rule(
    api: Api, uid: str
) -> None:
    # Given four stalled signups: two at the success simulator (one reader opens and clicks, one
    # only opens), one bounce, one complaint
    at_window_start(api)
    users = {box: unheld(f"{uid}-{box}") for box in ("success", "reader", "bounce", "complaint")}
    for box, user in users.items():
        mailbox = "success" if box == "reader" else box
        signed_up_with_traits(api, user, email=f"{mailbox}+{user}@{SIMULATOR}")
    move_clock(api, timedelta(hours=36))
    sent = {box: outbox(api, user)[0] for box, user in users.items()}
    # When the readers open (and one clicks) their email
    for box in ("success", "reader"):
        opened = api.session.post(f"{api.base_url}/_local/email/{sent[box]['message_id']}/open", timeout=60)
        assert opened.status_code == 200, opened.text
    clicked = api.session.post(
        f"{api.base_url}/_local/email/{sent['reader']['message_id']}/click",
        json={"link": "https://app.acme.example/setup"},
        timeout=60,
    )
    assert clicked.status_code == 200, clicked.text
    # ...and an email that does not exist is refused, naming it
    missing = api.session.post(f"{api.base_url}/_local/email/no-such-message/open", timeout=60)
    assert missing.status_code == 404
    assert "no-such-message" in missing.text
    # Then each message's ledger entry holds its feedback
    feedback = {box: set(outbox(api, user)[0]["feedback"]) for box, user in users.items()}
    assert feedback["reader"] >= {"sent", "delivered", "opened", "clicked"}
    assert feedback["success"] >= {"sent", "delivered", "opened"}
    assert "clicked" not in feedback["success"]
    assert feedback["bounce"] >= {"sent", "bounced"}
    assert "delivered" not in feedback["bounce"]
    assert feedback["complaint"] >= {"delivered", "complained"}
    # ...and the report's feedback section shows finish_setup's rates, none of them zero now
    page = api.session.get(f"{api.base_url}/_local/report", timeout=600).text
    section = page.split('id="feedback"')[1].split("</section>")[0]
    [row] = [r for r in section.split("<tr>") if r.startswith("<td>finish_setup</td>")]
    [finish] = [
        m for m in api.stack.report_data().messages if m.rule == "finish_setup" and m.channel == "email"
    ]
    for kind, _ in FEEDBACK_RATES:
        if kind == "soft_bounced":
            continue  # SES's simulator has no address that bounces transiently
        rate = finish.rate(kind)
        assert rate is not None
        assert rate > 0, kind
        assert f'<td class="num">{pct(rate)}</td>' in row, kind
