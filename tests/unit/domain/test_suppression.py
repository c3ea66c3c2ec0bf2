"""The suppression list's keys (normalised, keyed hashes) and what a record blocks."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from nudge.domain.suppression import address_key, address_keys, blocking, normalise
from nudge.model.suppression import Reason, Suppression

SECRET = b"suppression-keying-secret-0001"
OTHER = b"another-keying-secret-00000002"
AT = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "written",
    [
        "ada.lovelace@example.com",
        "Ada.Lovelace@Example.COM",
        "  ada.lovelace@example.com\t",
        "Ada Lovelace <Ada.Lovelace@example.com>",
    ],
)
def test_one_email_address_is_one_key_however_it_is_written(written: str) -> None:
    assert address_key([SECRET], "email", written) == address_key(
        [SECRET], "email", "ada.lovelace@example.com"
    )


@pytest.mark.parametrize(
    "other", ["adalovelace@example.com", "ada.lovelace+news@example.com", "ada@example.org"]
)
def test_different_email_addresses_get_different_keys(other: str) -> None:
    # Dots and +tags are kept: at most providers they are someone else, or another inbox
    assert address_key([SECRET], "email", other) != address_key([SECRET], "email", "ada.lovelace@example.com")


@pytest.mark.parametrize("written", ["+15555550123", "+1 (555) 555-0123", "+1.555.555.0123", "0015555550123"])
def test_one_phone_number_is_one_key_however_it_is_written(written: str) -> None:
    assert address_key([SECRET], "phone", written) == address_key([SECRET], "phone", "+15555550123")


@pytest.mark.parametrize(
    ("kind", "value"), [("email", "not an address"), ("email", "@x"), ("phone", "call me")]
)
def test_a_value_that_is_no_address_has_no_key(kind: str, value: str) -> None:
    assert normalise(kind, value) is None  # type: ignore[arg-type]
    assert address_keys([SECRET], kind, value) == []  # type: ignore[arg-type]


def test_the_key_holds_no_address_and_no_plain_hash_of_it() -> None:
    # Given the key of an address
    key = address_key([SECRET], "email", "ada@example.com")
    assert key is not None

    # Then neither the address nor its unkeyed SHA-256 (which a dictionary of addresses would find)
    # appears in it, and another secret gives another key: without the secret, no address can be tested
    for plain in ("ada@example.com", "email:ada@example.com"):
        assert hashlib.sha256(plain.encode()).hexdigest() not in key
    assert "ada" not in key
    assert address_key([OTHER], "email", "ada@example.com") != key
    # ...and the kinds never collide, even for one text
    assert address_key([SECRET], "phone", "+15555550123") != address_key([SECRET], "email", "+15555550123")


def test_every_secret_listed_is_looked_up_and_the_first_keys_new_records() -> None:
    keys = address_keys([SECRET, OTHER], "email", "ada@example.com")

    assert keys == [
        address_key([SECRET], "email", "ada@example.com"),
        address_key([OTHER], "email", "ada@example.com"),
    ]
    assert address_key([SECRET, OTHER], "email", "ada@example.com") == keys[0]


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        address_key([b"short"], "email", "ada@example.com")


def record(scope: str, reason: Reason = "unsubscribe") -> Suppression:
    return Suppression(key="email#k", scope=scope, reason=reason, at=AT)


@pytest.mark.parametrize(
    ("scope", "blocked"),
    [("email:onboarding", True), ("email", True), ("all", True), ("email:upgrade", False), ("sms", False)],
)
def test_a_record_blocks_marketing_in_its_scope_only(scope: str, blocked: bool) -> None:
    assert (blocking([record(scope)], "email", "onboarding", transactional=False) is not None) is blocked


@pytest.mark.parametrize(
    ("reason", "blocked"), [("unsubscribe", False), ("complaint", False), ("bounce", True)]
)
def test_transactional_mail_is_blocked_only_by_an_address_that_bounces(reason: Reason, blocked: bool) -> None:
    # An unsubscribe or a complaint stops marketing; an address that does not exist gets nothing
    found = blocking([record("email", reason)], "email", "receipts", transactional=True)
    assert (found is not None) is blocked
