"""What client keys' messages may set, and their rate limit: on fakes, no AWS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nudge.adapters.memory.rate_limits import FakeRateCounter
from nudge.domain.keys import KeyKind, new_record, user_token
from nudge.model.messages import Alias, Group, Identify, Message, Track
from nudge.services.client_keys import Sensitive, screen_messages
from nudge.services.rate_limit import WINDOW_SECONDS, check_rate

SECRET = b"user-token-secret-0123456789"
SENSITIVE = Sensitive(
    user=frozenset({"email", "phone", "consent", "ssn"}),
    account=frozenset({"tax_id"}),
    events={"invoice_paid": frozenset({"card_last4"})},
)
NOW = datetime(2025, 5, 1, 12, 0, 3, tzinfo=UTC)


def identify(traits: dict[str, object], token: str | None = None, user: str = "u1") -> Identify:
    context = {"userToken": token} if token is not None else {}
    return Identify.model_validate({"userId": user, "traits": traits, "context": context})


def run(messages: list[Message], *, client: bool = True):
    indexed = list(enumerate(messages))
    return screen_messages(indexed, client=client, sensitive=SENSITIVE, secrets=lambda: (SECRET,))


def test_a_client_identify_without_a_token_loses_its_sensitive_traits_and_keeps_the_rest() -> None:
    message = identify({"email": "ceo@acme.example", "phone": "+15550100", "plan": "pro", "ssn": "1"})

    dropped = run([message])

    assert [(d.index, d.field) for d in dropped] == [
        (0, "traits.email"),
        (0, "traits.phone"),
        (0, "traits.ssn"),
    ]
    assert message.traits.model_dump(exclude_unset=True) == {"plan": "pro"}


def test_a_valid_user_token_lets_the_sensitive_traits_through_and_is_taken_out() -> None:
    message = identify({"email": "u1@acme.example"}, token=user_token(SECRET, "u1"))

    assert run([message]) == []
    assert message.traits.email == "u1@acme.example"
    assert "userToken" not in message.context


def test_another_users_token_does_not_count() -> None:
    message = identify({"consent": {"email": True}}, token=user_token(SECRET, "someone-else"))

    assert [d.field for d in run([message])] == ["traits.consent"]
    assert message.traits.consent is None


def test_a_sensitive_event_property_from_a_client_key_needs_the_token_too() -> None:
    def paid(token: str | None = None) -> Track:
        context = {"userToken": token} if token is not None else {}
        properties = {"revenue": 45, "card_last4": "4242"}
        return Track.model_validate(
            {"userId": "u1", "event": "invoice_paid", "properties": properties, "context": context}
        )

    without, signed = paid(), paid(user_token(SECRET, "u1"))

    assert [(d.index, d.field) for d in run([without, signed])] == [(0, "properties.card_last4")]
    assert without.properties == {"revenue": 45}
    assert signed.properties == {"revenue": 45, "card_last4": "4242"}


def test_server_keys_keep_everything_but_the_token_still_goes() -> None:
    message = identify({"email": "u1@acme.example"}, token="whatever")

    assert run([message], client=False) == []
    assert message.traits.email == "u1@acme.example"
    assert "userToken" not in message.context


def test_group_traits_the_plan_marks_sensitive_are_dropped_and_tracks_are_untouched() -> None:
    group = Group.model_validate({"userId": "u1", "groupId": "a1", "traits": {"name": "Acme", "tax_id": "9"}})
    track = Track.model_validate({"userId": "u1", "event": "login", "properties": {"email": "x@y.z"}})

    dropped = run([track, group])

    assert [(d.index, d.field) for d in dropped] == [(1, "traits.tax_id")]
    assert group.traits.model_dump(exclude_unset=True) == {"name": "Acme"}
    assert track.properties == {"email": "x@y.z"}


def test_traits_rudderstack_copies_into_context_go_too() -> None:
    message = Identify.model_validate(
        {"userId": "u1", "context": {"traits": {"email": "a@b.co", "plan": "x"}}}
    )

    run([message])

    assert message.context["traits"] == {"plan": "x"}
    assert message.traits.email is None


def test_without_a_readable_secret_no_token_verifies_and_the_fields_drop() -> None:
    message = identify({"email": "u1@acme.example"}, token=user_token(SECRET, "u1"))

    def broken() -> tuple[bytes, ...]:
        raise TimeoutError("ssm")

    dropped = screen_messages([(0, message)], client=True, sensitive=SENSITIVE, secrets=broken)

    assert [d.field for d in dropped] == ["traits.email"]


def client_key(rate_limit: int):
    return new_record("c1", KeyKind.CLIENT, "ck", created_at=NOW, rate_limit=rate_limit)


def test_a_client_key_gets_its_budget_per_window_then_waits_for_the_next() -> None:
    counter = FakeRateCounter()
    key = client_key(rate_limit=2)  # 2 a second: 20 per 10 s window

    first = check_rate(counter, key, 15, NOW)
    second = check_rate(counter, key, 6, NOW)
    third = check_rate(counter, key, 5, NOW)
    next_window = check_rate(counter, key, 20, NOW + timedelta(seconds=WINDOW_SECONDS))

    assert first.allowed
    assert not second.allowed
    assert second.retry_after == 7  # the window started at :00 and ends at :10; now is :03
    assert third.allowed  # a refused request took nothing
    assert next_window.allowed


def test_a_limiter_outage_lets_traffic_through_and_says_so() -> None:
    counter = FakeRateCounter()
    counter.down = True

    decision = check_rate(counter, client_key(rate_limit=1), 10_000, NOW)

    assert decision.allowed
    assert decision.degraded


def test_a_client_alias_is_limited_to_the_anonymous_profile_and_a_server_one_is_not() -> None:
    client_alias = Alias(previousId="victim", userId="attacker")
    server_alias = Alias(previousId="old-id", userId="new-id")

    assert run([client_alias]) == []
    run([server_alias], client=False)

    assert client_alias.links() == [("anon:victim", "attacker", "previousId")]
    assert ("old-id", "new-id", "previousId") in server_alias.links()
