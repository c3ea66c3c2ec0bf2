"""Message shapes the SDKs send that Segment's own models would not spell the same way."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from nudge.model.messages import Alias, Batch, Identify, InvalidMessage, Message, field_errors


def test_an_identify_with_traits_only_in_its_context_takes_them_as_rudderstack_sends_them() -> None:
    message = Identify.model_validate(
        {"userId": "u1", "context": {"traits": {"plan": "team", "email": "ada@example.com"}}}
    )
    assert message.traits.plan == "team"
    assert message.traits.email == "ada@example.com"


def test_root_traits_win_over_the_context_ones() -> None:
    message = Identify.model_validate(
        {"userId": "u1", "traits": {"plan": "free"}, "context": {"traits": {"plan": "team"}}}
    )
    assert message.traits.plan == "free"


def test_context_traits_are_validated_like_root_ones() -> None:
    with pytest.raises(ValidationError, match="is not an email address"):
        Identify.model_validate({"userId": "u1", "context": {"traits": {"email": "not-an-address"}}})


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"type": "track", "event": "login", "userId": "anon:dev-1"}, "userId"),
        ({"type": "identify", "userId": "anon:dev-1", "anonymousId": "dev-1"}, "userId"),
        ({"type": "alias", "userId": "anon:dev-1", "previousId": "u1"}, "userId"),
        ({"type": "alias", "userId": "u1", "previousId": "anon:dev-1"}, "previousId"),
    ],
)
def test_an_id_with_the_anonymous_prefix_is_refused_naming_the_field_and_why(
    message: dict[str, object], field: str
) -> None:
    # `anon:x` is the key of anonymousId x's profile: as a userId it would be taken for that profile
    with pytest.raises(ValidationError) as raised:
        TypeAdapter(Message).validate_python(message)
    assert [(f, m.split(":")[0]) for f, m in field_errors(raised.value)] == [
        (field, f"{field} must not start with 'anon")
    ]
    assert "anonymous profiles" in field_errors(raised.value)[0][1]
    # In a batch, the entry alone is refused, with the same field
    entry = Batch.model_validate({"batch": [message]}).batch[0]
    assert isinstance(entry, InvalidMessage)
    assert [f for f, _ in entry.errors] == [field]


def test_an_anonymous_id_and_ids_merely_containing_the_prefix_are_fine() -> None:
    adapter = TypeAdapter(Message)
    adapter.validate_python({"type": "track", "event": "login", "anonymousId": "anon:dev-1"})
    adapter.validate_python({"type": "alias", "userId": "u:anon:1", "previousId": "ANON-1"})


def test_an_alias_limited_to_anonymous_links_the_anonymous_profile_only_and_serializes_the_same() -> None:
    alias = TypeAdapter(Message).validate_python({"type": "alias", "userId": "u2", "previousId": "u1"})
    assert isinstance(alias, Alias)
    assert [src for src, _, _ in alias.links()] == ["u1", "anon:u1"]
    dump, key = alias.model_dump(), alias.dedupe_key()
    alias.limit_to_anonymous()
    assert alias.anonymous_only
    assert alias.links() == [("anon:u1", "u2", "previousId")]
    assert (alias.model_dump(), alias.dedupe_key()) == (dump, key)


# ---------------------------------------------------------------------------- numbers

SAFE = 2**53 - 1


def _batch_errors(*messages: dict[str, object]) -> list[list[tuple[str, str]] | str]:
    """Each entry's (field, message) errors, or its type when valid."""
    batch = Batch.model_validate({"batch": list(messages)})
    return [m.errors if isinstance(m, InvalidMessage) else m.type for m in batch.batch]


def _track(**properties: object) -> dict[str, object]:
    return {"type": "track", "userId": "u1", "event": "login", "properties": properties}


def test_each_number_no_reader_keeps_is_named_and_only_its_message_refused() -> None:
    results = _batch_errors(
        _track(n=float("nan"), deep={"list": [1, float("inf")]}, big=SAFE + 1),
        _track(edge=SAFE, low=-SAFE, tiny=5e-324, large=1.5e300, flag=True, nothing=None),
        {"type": "identify", "userId": "u1", "traits": {"score": -float("inf")}},
    )

    assert [[field for field, _ in r] if isinstance(r, list) else r for r in results] == [
        ["properties.n", "properties.deep.list.1", "properties.big"],
        "track",
        ["traits.score"],
    ]
    first = results[0]
    assert isinstance(first, list)
    assert first[0][1].startswith("properties.n is not a finite number")
    assert "send an id or a big count as a string" in first[2][1]


def test_numeric_traits_are_bounded_whether_integral_or_not_and_wherever_sent() -> None:
    results = _batch_errors(
        {"type": "group", "userId": "u1", "groupId": "g", "traits": {"mrr": 1e19, "seats": 10**20}},
        {"type": "group", "userId": "u1", "groupId": "g", "traits": {"mrr": float(SAFE), "seats": SAFE}},
        {"type": "identify", "userId": "u1", "traits": {"ltv": -1e16, "nested": {"x": 1e17}}},
        # RudderStack's identify: traits in the context only, named where they were sent (once)
        {"type": "identify", "userId": "u1", "context": {"traits": {"ltv": 1e16}}},
        # context.traits of any call are traits; other context numbers only need to be finite
        {"type": "track", "userId": "u1", "event": "e", "context": {"traits": {"a": 1e16}, "b": 1e300}},
        # mrr and seats sent as text are bounded once read as numbers
        {"type": "group", "userId": "u1", "groupId": "g", "traits": {"mrr": "1e19", "seats": "1" + "0" * 20}},
        {"type": "group", "userId": "u1", "groupId": "g", "traits": {"mrr": "Infinity"}},
    )

    assert [[field for field, _ in r] if isinstance(r, list) else r for r in results] == [
        ["traits.mrr", "traits.seats"],
        "group",
        ["traits.ltv", "traits.nested.x"],
        ["context.traits.ltv"],
        ["context.traits.a"],
        ["traits.mrr", "traits.seats"],
        ["traits.mrr"],
    ]
    first = results[0]
    assert isinstance(first, list)
    assert all("range of a numeric trait" in message for _, message in first)


def test_a_single_message_and_the_batch_envelope_name_their_numbers_too() -> None:
    with pytest.raises(ValidationError) as single:
        TypeAdapter(Message).validate_python(_track(n=float("nan")))
    assert [f for f, _ in field_errors(single.value, skip=1)] == ["properties.n"]

    with pytest.raises(ValidationError) as envelope:
        Batch.model_validate({"batch": [_track()], "context": {"screen": {"density": float("inf")}}})
    assert [f for f, _ in field_errors(envelope.value)] == ["context.screen.density"]


def test_a_message_with_thousands_of_problems_names_a_few_and_counts_the_rest() -> None:
    # Named one by one, a 500 KB batch of NaNs answered 6 MB: past Lambda's response limit.
    [errors] = _batch_errors(_track(**{f"p{i}": float("nan") for i in range(3000)}))

    assert isinstance(errors, list)
    assert [field for field, _ in errors] == [
        "properties.p0",
        "properties.p1",
        "properties.p2",
        "properties.p3",
        "properties.p4",
    ]
    assert errors[-1][1] == (
        "and 2996 more problems in this message, properties.p4 the first of them: fix those named, then send it again"
    )
    # Pydantic's own errors are capped alike (a consent entry that is not a boolean, thousands of times)
    [consent] = _batch_errors(
        {"type": "identify", "userId": "u1", "traits": {"consent": {f"c{i}": "x" for i in range(50)}}}
    )
    assert isinstance(consent, list)
    assert len(consent) == 5
    assert "and 46 more problems" in consent[-1][1]
