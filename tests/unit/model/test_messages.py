"""Message shapes the SDKs send that Segment's own models would not spell the same way."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nudge.model.messages import Identify


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
