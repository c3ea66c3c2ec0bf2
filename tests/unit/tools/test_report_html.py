"""The HTML report: every section, the numbers, escaping, the empty case, well-formed and offline."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest

from nudge.domain.lift import LiftRow
from nudge.domain.report_model import EscalationBucket, FunnelStep, QualityRow, ReportData, RuleMessages
from nudge.tools.report.html import render

SECTION_IDS = [
    "summary",
    "segments",
    "transitions",
    "funnel",
    "messages",
    "flows",
    "journeys",
    "feedback",
    "escalations",
    "adoption",
    "lift",
    "quality",
]
EVIL = "<script>alert(1)</script>"
NOW = datetime(2025, 3, 24, 9, 30, tzinfo=UTC)
VOID = {"meta", "link", "br", "hr", "img", "input", "area", "base", "col", "embed", "source", "track", "wbr"}


def sample() -> ReportData:
    works = LiftRow("welcome_tips", "setup_completed within 7 days", 200, 120, 100, 30, pending=4)
    small = LiftRow("rescue_push", "meaningful use within 3 days", 10, 4, 5, 1, pending=0)
    return ReportData(
        generated_at=NOW,
        source="usage table nudge-usage (eu-west-1)",
        users=1234,
        accounts=56,
        segments=["new", "active", EVIL],
        weekly_sizes=[
            ("2025-W10", {"new": 40, "active": 10}),
            ("2025-W11", {"new": 30, "active": 25, EVIL: 5}),
            ("2025-W12", {"new": 20, "active": 30, EVIL: 12}),
        ],
        flows={("new", "active"): 21, ("active", EVIL): 9, (EVIL, "active"): 2},
        funnel=[
            FunnelStep("signed_up", 400, None),
            FunnelStep("setup_completed", 300, 5.5),
            FunnelStep("project_created", 150, 60.0),
        ],
        messages=[
            RuleMessages(
                "welcome_tips",
                "onboarding",
                "email",
                377,
                310,
                6,
                30,
                2,
                3,
                {"cap_email_day": 17, "no_consent": 9},
                {"delivered": 300, "bounced": 6, "complained": 1, "opened": 150, "clicked": 30},
            ),
            RuleMessages("rescue_push", "rescue", "push", 40, 25, 0, 5, 0, 1, {"quiet_hours": 9}),
        ],
        escalations=[
            EscalationBucket("under $1k", 30, 0),
            EscalationBucket("$1k to 5k", 20, 3),
            EscalationBucket("$20k and up", 6, 4),
        ],
        features=["reports", "api_keys"],
        adoption={"new": {"reports": 0.25, "api_keys": 0.0}, EVIL: {"reports": 0.9, "api_keys": 0.5}},
        lift=[works, small, LiftRow("upgrade_nudge", "plan changed within 14 days", 50, 10, 0, 0, pending=0)],
        quality=[QualityRow("new", 80, 20), QualityRow("active", 120, 96), QualityRow(EVIL, 40, 12)],
        retained_overall=128 / 240,
    )


def empty() -> ReportData:
    return ReportData(
        generated_at=NOW,
        source="",
        users=0,
        accounts=0,
        segments=[],
        weekly_sizes=[],
        flows={},
        funnel=[],
        messages=[],
        escalations=[],
        features=[],
        adoption={},
        lift=[],
        quality=[],
        retained_overall=None,
    )


class Checker(HTMLParser):
    """Fails on unbalanced tags; collects every src/href for the offline check."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.links: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)

    def _attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "section" and values.get("id"):
            self.ids.append(str(values["id"]))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()


def check(page: str) -> Checker:
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    return checker


def test_sections_once_in_order() -> None:
    page = render(sample())
    assert check(page).ids == SECTION_IDS
    for ident in SECTION_IDS:
        assert page.count(f'id="{ident}"') == 1


def test_document_shell() -> None:
    page = render(sample())
    assert page.startswith("<!doctype html>")
    assert '<html lang="en">' in page
    assert '<meta charset="utf-8">' in page
    assert 'name="viewport"' in page
    assert "<title>Nudge report</title>" in page


def has_all(text: str, *parts: str) -> None:
    missing = [p for p in parts if p not in text]
    assert missing == []


def section(page: str, ident: str) -> str:
    return page.split(f'id="{ident}"')[1].split("</section>")[0]


def test_numbers_appear() -> None:
    page = render(sample())
    # users, accounts, messages sent (310 + 25), escalated accounts (0 + 3 + 4)
    has_all(section(page, "summary"), "1,234", ">56<", ">335<", ">7<")
    has_all(section(page, "segments"), "2025-W10", "2025-W11", "2025-W12", "new: 40")
    has_all(section(page, "transitions"), "new → active", '<td class="num">21</td>')
    has_all(section(page, "funnel"), "400", "75%", "38%", "5.5 h", "2.5 days")
    # suppressed 17 + 9 for welcome_tips; reasons readable
    has_all(
        section(page, "messages"), '<td class="num">26</td>', "cap email day", "no consent", "quiet hours"
    )
    # delivered 300 of 310 sent, bounces 6 and complaints 1 per sent; opens 150 and clicks 30 of
    # the 300 delivered; push has no feedback rows
    feedback = section(page, "feedback")
    has_all(feedback, "welcome_tips", "97%", "1.9%", "0.3%", "50%", "10%")
    assert "rescue_push" not in feedback
    has_all(section(page, "escalations"), "3 of 20 (15%)", "4 of 6 (67%)")
    has_all(section(page, "adoption"), "90%", "25%", "api keys")
    has_all(section(page, "lift"), "60%", "30%", "+30.0 pp", "works", "4 still waiting")
    quality = section(page, "quality")
    has_all(quality, "80%", "overall 53%", "predicts nothing: redefine it")


def test_in_app_feedback_per_step_beside_email() -> None:
    # Given the rescue's survey put in 20 inboxes: 12 seen, 8 answered (5 too complex, 3 no time)
    survey = RuleMessages(
        "declining_rescue:survey", "rescue", "in_app", 20, 20, 0, 0, 0, 0, {},
        {"seen": 12, "answered": 8}, {"too_complex": 5, "no_time": 3},
    )  # fmt: skip
    page = render(dataclasses.replace(sample(), messages=[*sample().messages, survey]))
    # Then the feedback section has it per message put in an inbox, with the answers, beside email
    feedback = section(page, "feedback")
    has_all(
        feedback, "welcome_tips", "declining_rescue:survey", "12 · 60%", "8 · 40%", "too_complex 5, no_time 3"
    )


def test_warning_shown_plainly_without_whisker() -> None:
    page = render(sample())
    lift = page.split('id="lift"')[1].split("</section>")[0]
    assert "too few users to say (treated 10, held out 5" in lift
    assert "can&#x27;t say yet" in lift
    # one trusted row: a whisker and two caps; the warned row gets only a hollow dot
    assert lift.count('stroke-width="2"/>') == 1
    assert 'fill="none"' in lift


def test_user_text_escaped_everywhere() -> None:
    page = render(sample())
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    check(page)


def test_segment_keeps_one_colour() -> None:
    page = render(sample())
    # "new" is first in file order: the first colour of the palette wherever it is drawn
    for ident in ("segments", "transitions", "quality"):
        part = page.split(f'id="{ident}"')[1].split("</section>")[0]
        assert re.search(r'fill="#0072B2"(?: fill-opacity="0.45")?><title>(?:2025-W10 · )?new', part), ident


def test_empty_report() -> None:
    page = render(empty())
    checker = check(page)
    assert checker.ids == SECTION_IDS
    assert page.count("Nothing yet:") == 11  # every section but the summary
    assert "no weeks of segment history" in page
    assert "no rule has decided anything" in page
    assert "no rule with a goal" in page
    assert "no one has entered a journey" in page
    assert "<svg" not in page


@pytest.mark.parametrize("data", [sample(), empty()])
def test_offline(data: ReportData) -> None:
    page = render(data)
    links = check(page).links
    assert all(link.startswith("#") for link in links)
    for forbidden in ("http://", "https://", "<script", "@import", "url("):
        assert forbidden not in page
