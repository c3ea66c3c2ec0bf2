"""`nudge demo`, small, end to end: beside email, push and in-app, the demo sends SMS through the notify
function and moto's SNS (the shipped rescue's [push, sms, email] for the sample users who chose texts),
its users answer in-app surveys through POST /v1/inbox/{id}/answer with an inbox token, readers click
journey emails, and the summary and the HTML report count them per rule and journey step.

Its own stack (run_demo starts one; marked own_stack: it runs before the shared stack starts). The
history is fixed by seed and start: noon UTC, so the sweeps run at midnight and noon UTC, and the
week-closing sweep that finds the decliners is evening in the Americas, outside their quiet hours.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from moto.moto_api._internal.models import moto_api_backend
from rich.console import Console

from nudge.tools.local.demo import run_demo
from tests.e2e.conftest import SHARED

pytestmark = [pytest.mark.e2e, pytest.mark.own_stack, pytest.mark.timeout(1800)]
START = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
USERS, ACCOUNTS, DAYS = 60, 6, 42  # six weeks: decliners found, surveyed, answering


@pytest.fixture(scope="module")
def printed() -> str:
    assert not SHARED, "the shared stack is up: own_stack modules run before it (tests/conftest.py)"
    out = io.StringIO()
    console = Console(file=out, width=220, color_system=None, force_terminal=False)
    try:
        run_demo(users=USERS, accounts=ACCOUNTS, days=DAYS, seed=7, start=START, console=console)
    finally:
        # moto's backends are process-wide: the shared stack, next, starts from nothing.
        moto_api_backend.reset()
    return out.getvalue()


def row(text: str, label: str) -> list[str]:
    """The cells of the first table row starting with `label` (rich's box drawing, no colour)."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").replace("┃", "│").split("│")]
        if cells and cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in:\n{text}")


def count(cell: str) -> int:
    return 0 if cell in ("-", "") else int(cell.split()[0].replace(",", ""))


def test_the_demo_sends_sms_through_sns_for_the_rescue(printed: str) -> None:
    # The outbox (what left moto's SES and SNS, matched to the ledger) counts SMS beside email and push
    sent = re.search(r"Sent: [\d,]+ messages \(([^)]*)\)", printed)
    assert sent is not None, printed
    channels = {
        name: int(n.replace(",", "")) for n, name in re.findall(r"(\d[\d,]*) ([a-z_]+)", sent.group(1))
    }
    assert channels.get("sms", 0) >= 1, sent.group(0)
    assert channels.get("email", 0) > channels["sms"]
    # ...and the per-step table says which step sent them: the rescue's quick win
    table = printed.split("Messages sent, by rule or journey step and channel", 1)[1]
    sms = row(table, "rule / journey:step").index("sms")
    assert count(row(table, "declining_rescue:quick_win")[sms]) >= 1
    assert count(row(table, "onboarding:first_project")[sms]) == 0  # an email-only step


def test_the_demo_users_answer_in_app_surveys_and_the_rescue_branches(printed: str) -> None:
    # The inbox, read back: the rescue's surveys were seen and answered through the real route
    inbox = printed.split("In-app messages and surveys", 1)[1]
    sent, seen, _, answered, _ = map(count, row(inbox, "declining_rescue:survey"))
    assert sent >= seen >= answered >= 1
    given = re.search(r"Survey answers: ([^.]*)\.", printed)
    assert given is not None
    assert re.search(r"blocker=(too_complex|missing_feature|no_time|switched_tool|other) \d", given.group(1))
    assert "answered" in printed.split("with an inbox token (", 1)[1].split(")", 1)[0]
    # ...and the answers reached the journey: its funnel shows users past the branch on the answer
    funnel = printed.split("Journey declining_rescue", 1)[1].split("Journey ", 1)[0]
    _, reached, _, _ = row(funnel, "route")  # kind, reached, waiting now, sent
    assert count(reached) >= 1


def test_readers_click_journey_emails(printed: str) -> None:
    # The SES feedback table, per rule: a journey's emails (the onboarding's) are opened and clicked
    feedback = printed.split("Email feedback from SES", 1)[1]
    cells = row(feedback, "onboarding")
    assert count(cells[-1]) >= 1  # clicked
    assert count(cells[-2]) >= count(cells[-1])  # opened


def test_the_report_shows_sms_per_journey_step_and_the_three_journeys_as_flows(printed: str) -> None:
    found = re.search(r"Report: (\S+report\.html)", printed)
    assert found is not None
    page = Path(found.group(1)).read_text(encoding="utf-8")
    messages = page.split('<section id="messages">', 1)[1].split("</section>", 1)[0]
    assert "<td>declining_rescue:quick_win</td><td>rescue</td><td>sms</td>" in messages
    assert "<td>declining_rescue:survey</td><td>rescue</td><td>in_app</td>" in messages
    # ...what users did with the survey, from their inbox items, beside the email feedback
    feedback = page.split('<section id="feedback">', 1)[1].split("</section>", 1)[0]
    assert "<td>declining_rescue:survey</td>" in feedback
    assert re.search(
        r"<td>declining_rescue:survey</td>.*?(too_complex|missing_feature|no_time|switched|other) \d",
        feedback,
    )
    journeys = page.split('<section id="journeys">', 1)[1].split("</section>", 1)[0]
    for journey in ("declining_rescue", "onboarding", "upgrade"):
        assert f'data-flow="journey:{journey}"' in journeys
    # ...the upgrade's A/B variants and its holdout, each an arm of its experiment
    for arm in ("upgrade_offer", "upgrade_trial", "holdout"):
        assert f"<td>{arm}</td>" in journeys
