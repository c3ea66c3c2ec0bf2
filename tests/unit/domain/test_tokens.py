"""Signed unsubscribe tokens: round trip, tampering, rotation, no expiry, the address key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nudge.domain.tokens import TokenInvalid, UnsubscribeClaim, make_token, read_token

SECRET = b"s3cret-for-unsubscribe-tests-0001"
OLD_SECRET = b"old-secret-for-unsubscribe-tests"
ISSUED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_a_token_reads_back_as_its_claim() -> None:
    # Given a token for a user leaving marketing email
    token = make_token(SECRET, "user-42", "email:marketing", ISSUED)

    # When it is read
    claim = read_token(SECRET, token)

    # Then the claim is what was signed
    assert claim == UnsubscribeClaim("user-42", "email:marketing", ISSUED)


def test_a_token_is_compact_and_url_safe() -> None:
    # Given a token
    token = make_token(SECRET, "user-42", "email", ISSUED)

    # Then it is v1.<payload>.<sig>, URL-safe base64 without padding, short enough for a link
    assert re.fullmatch(r"v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}", token)
    assert len(token) < 120


@given(user_id=st.text(min_size=1, max_size=80), scope=st.text(min_size=1, max_size=40))
def test_any_user_id_and_scope_survive_the_round_trip(user_id: str, scope: str) -> None:
    # Given any ids, unicode and punctuation included
    token = make_token(SECRET, user_id, scope, ISSUED)

    # When read back, Then they are unchanged
    assert read_token(SECRET, token) == UnsubscribeClaim(user_id, scope, ISSUED)


@given(data=st.data())
def test_changing_any_one_character_invalidates_the_token(data: st.DataObject) -> None:
    # Given a genuine token and one position in it
    token = make_token(SECRET, "user-42", "email", ISSUED)
    index = data.draw(st.integers(0, len(token) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    char = data.draw(st.sampled_from(alphabet).filter(lambda c: c != token[index]))

    # When that character is changed
    tampered = token[:index] + char + token[index + 1 :]

    # Then the token is refused (no other spelling of the same bytes is accepted either)
    with pytest.raises(TokenInvalid):
        read_token(SECRET, tampered)


def test_a_token_for_another_user_cannot_be_forged_by_swapping_the_payload() -> None:
    # Given two genuine tokens
    mine = make_token(SECRET, "attacker", "email", ISSUED)
    theirs = make_token(SECRET, "victim", "email", ISSUED)

    # When the victim's payload is paired with the attacker's signature
    forged = ".".join([*theirs.split(".")[:2], mine.split(".")[2]])

    # Then it is refused, and the message quotes neither token nor secret
    with pytest.raises(TokenInvalid) as caught:
        read_token(SECRET, forged)
    assert "signature" in str(caught.value)
    assert forged not in str(caught.value)
    assert SECRET.decode() not in str(caught.value)


def test_a_token_signed_with_an_unknown_secret_is_invalid() -> None:
    # Given a token made with someone else's secret
    token = make_token(b"not-our-secret-at-all-0000000000", "user-42", "email", ISSUED)

    # When we read it, Then it is refused
    with pytest.raises(TokenInvalid):
        read_token(SECRET, token)


def test_an_old_secret_still_reads_tokens_during_rotation() -> None:
    # Given a token signed before the rotation
    old_token = make_token(OLD_SECRET, "user-42", "email", ISSUED)

    # When read with the new secret first and the old one kept
    claim = read_token([SECRET, OLD_SECRET], old_token)

    # Then it is honoured
    assert claim.user_id == "user-42"


def test_the_first_secret_signs_when_several_are_given() -> None:
    # Given secrets in rotation order
    token = make_token([SECRET, OLD_SECRET], "user-42", "email", ISSUED)

    # When the old secret is retired, Then the token still reads; with only the old one, it does not
    assert read_token(SECRET, token).user_id == "user-42"
    with pytest.raises(TokenInvalid):
        read_token(OLD_SECRET, token)


def test_a_genuine_token_never_expires() -> None:
    # Given a token issued ten years before the epoch of today's links
    token = make_token(SECRET, "user-42", "email", ISSUED - timedelta(days=3650))

    # When it is read, Then it is honoured: only a bad signature or shape refuses a token
    assert read_token(SECRET, token) == UnsubscribeClaim("user-42", "email", ISSUED - timedelta(days=3650))


def test_a_token_carries_the_address_key_it_was_made_with() -> None:
    # Given a token naming the key of the address the message went to
    token = make_token(SECRET, "user-42", "email:onboarding", ISSUED, "email#" + "ab" * 32)

    # When it is read, Then the key comes back with the rest of the claim
    claim = read_token(SECRET, token)
    assert claim == UnsubscribeClaim("user-42", "email:onboarding", ISSUED, "email#" + "ab" * 32)
    # ...and a token without one (made before tokens carried it) reads with none
    assert read_token(SECRET, make_token(SECRET, "user-42", "email", ISSUED)).address_key is None


def test_the_address_key_is_signed_like_the_rest() -> None:
    # Given a genuine token whose payload is swapped for one naming another address key
    token = make_token(SECRET, "user-42", "email", ISSUED, "email#" + "ab" * 32)
    other = make_token(b"attacker-secret-0123456789abcdef", "user-42", "email", ISSUED, "email#" + "cd" * 32)
    forged = ".".join([other.split(".")[0], other.split(".")[1], token.split(".")[2]])

    # When it is read, Then it is refused
    with pytest.raises(TokenInvalid):
        read_token(SECRET, forged)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1",
        "v1.abc",
        "v1.a.b.c",
        "v2.eyJ4IjoxfQ.AAAA",
        "v1.!!!.AAAA",
        "v1.eyJ4IjoxfQ==.AAAA",
        "v1." + "A" * 5000 + ".AAAA",
    ],
)
def test_malformed_tokens_are_invalid(token: str) -> None:
    # Given a string that is no token of ours
    # When it is read, Then it is refused as invalid (never a crash)
    with pytest.raises(TokenInvalid):
        read_token(SECRET, token)


def test_a_validly_signed_payload_of_the_wrong_shape_is_invalid() -> None:
    # Given a payload signed with our secret but not [user, scope, time]
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signed = "v1." + b64(b'{"user":"x"}')
    token = signed + "." + b64(hmac.new(SECRET, signed.encode(), hashlib.sha256).digest())

    # When it is read, Then it is refused
    with pytest.raises(TokenInvalid, match="malformed"):
        read_token(SECRET, token)


def test_naive_times_and_short_secrets_are_refused() -> None:
    # Given a naive datetime or a short secret, Then making a token refuses them
    with pytest.raises(ValueError, match="timezone"):
        make_token(SECRET, "u", "email", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="at least"):
        make_token(b"short", "u", "email", ISSUED)
    with pytest.raises(ValueError, match="at least"):
        read_token([], "v1.a.b")
    with pytest.raises(ValueError, match="address_key"):
        make_token(SECRET, "u", "email", ISSUED, "")
