"""SES feedback -> suppression list and ledger (nudge.services.feedback), over the in-memory fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nudge.adapters.memory.ledger import MemoryLedger
from nudge.adapters.memory.soft_bounces import MemorySoftBounces
from nudge.adapters.memory.suppression import MemorySuppressionStore
from nudge.domain.feedback import encode_user
from nudge.domain.suppression import blocking
from nudge.model.feedback import Feedback, FeedbackKind
from nudge.services.feedback import FeedbackPorts, handle_feedback
from nudge.services.suppression import SuppressionList

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ADDRESS = "ada@example.com"


def ports() -> FeedbackPorts:
    return FeedbackPorts(
        ledger=MemoryLedger(),
        suppressions=SuppressionList(MemorySuppressionStore(), lambda: [b"k" * 32]),
        soft_bounces=MemorySoftBounces(),
    )


def event(kind: FeedbackKind, message_id: str = "m-1", at: datetime = NOW) -> Feedback:
    user = encode_user("ada")
    assert user is not None
    return Feedback(
        kind=kind,
        message_id=message_id,
        at=at,
        tags={"rule": "finish_setup", "decision": "d-1", "user": user},
        recipients=(ADDRESS,),
    )


def records(p: FeedbackPorts) -> list[tuple[str, str]]:
    return [(r.scope, r.reason) for r in p.suppressions.of_address("email", ADDRESS)]


def test_a_complaint_stops_marketing_email_but_not_transactional() -> None:
    p = ports()
    result = handle_feedback(event("complained"), p, NOW)
    assert result.suppressed == ("complaint",)
    found = p.suppressions.of_address("email", ADDRESS)
    assert blocking(found, "email", "onboarding", transactional=False) is not None
    assert blocking(found, "email", "onboarding", transactional=True) is None


def test_a_hard_bounce_after_an_unsubscribe_is_still_recorded_and_blocks_transactional() -> None:
    # Given an address that unsubscribed from all email
    p = ports()
    key = p.suppressions.key("email", ADDRESS)
    assert key is not None
    p.suppressions.record(key, "email", "unsubscribe", NOW)
    # When its mail bounces permanently
    handle_feedback(event("bounced"), p, NOW)
    # Then both records are there, and transactional mail is blocked too
    assert sorted(records(p)) == [("email", "bounce"), ("email", "unsubscribe")]
    assert blocking(p.suppressions.of_address("email", ADDRESS), "email", "x", transactional=True) is not None


def test_three_soft_bounces_in_the_window_suppress_two_do_not() -> None:
    p = ports()
    for n in range(2):
        assert handle_feedback(event("soft_bounced", f"m-{n}"), p, NOW + timedelta(days=n)).suppressed == ()
    assert records(p) == []
    # ...the same message reported again does not count twice
    assert handle_feedback(event("soft_bounced", "m-1"), p, NOW + timedelta(days=2)).suppressed == ()
    # ...a third message's bounce does
    third = handle_feedback(event("soft_bounced", "m-2"), p, NOW + timedelta(days=2))
    assert third.suppressed == ("soft_bounce",)
    assert records(p) == [("email", "soft_bounce")]


def test_soft_bounces_further_apart_than_the_window_never_suppress() -> None:
    p = ports()
    for n in range(6):
        at = NOW + timedelta(days=8 * n)
        assert handle_feedback(event("soft_bounced", f"m-{n}", at), p, at).suppressed == ()


def test_feedback_without_its_ledger_entry_is_unmatched_and_opens_suppress_nothing() -> None:
    p = ports()
    result = handle_feedback(event("opened"), p, NOW)
    assert (result.matched, result.suppressed, result.rule) == (False, (), "finish_setup")
    untagged = Feedback(kind="bounced", message_id="m", at=NOW, recipients=(ADDRESS,))
    result = handle_feedback(untagged, p, NOW)
    assert (result.matched, result.rule, result.suppressed) == (False, "", ("bounce",))
