"""Key records, matching, scopes, origins and user tokens: pure, no AWS."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from nudge.domain.keys import (
    KeyKind,
    KeyRecordError,
    Scope,
    admits,
    hash_key,
    match_key,
    new_record,
    origin_allowed,
    parse_record,
    preflight_allowed,
    strip_fields,
    user_token,
    valid_user_token,
)

NOW = datetime(2025, 5, 1, tzinfo=UTC)


def record(key: str, kind: KeyKind = KeyKind.SERVER, key_id: str = "k1", origins: tuple[str, ...] = ()):
    return new_record(key_id, kind, key, created_at=NOW, origins=origins)


def test_a_record_stores_the_hash_never_the_key_and_reads_back_the_same() -> None:
    stored = record("s3cret-key", KeyKind.CLIENT, origins=("https://App.Example.com/",))

    text = stored.to_json()

    assert "s3cret-key" not in text
    assert json.loads(text)["sha256"] == hash_key("s3cret-key")
    assert parse_record("k1", text) == stored
    assert stored.origins == ("https://app.example.com",)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("{nope", "not JSON"),
        ('{"kind": "root", "sha256": "' + "a" * 64 + '"}', "kind must be"),
        ('{"kind": "server", "sha256": "short"}', "sha256 must be"),
        (
            '{"kind": "client", "sha256": "' + "a" * 64 + '", "origins": ["app.example.com"]}',
            "not scheme://host",
        ),
        ('{"kind": "client", "sha256": "' + "a" * 64 + '", "rate_limit": 0}', "rate_limit"),
    ],
)
def test_a_bad_record_is_refused_naming_what_is_wrong(raw: str, problem: str) -> None:
    with pytest.raises(KeyRecordError, match=problem):
        parse_record("k1", raw)


def test_the_presented_key_matches_its_record_and_nothing_else() -> None:
    records = [record("alpha", key_id="a"), record("beta", KeyKind.ADMIN, key_id="b")]

    assert match_key(records, "beta").key_id == "b"  # type: ignore[union-attr]
    assert match_key(records, "alph") is None
    assert match_key([], "alpha") is None


def test_ingest_takes_client_and_server_keys_and_admin_takes_only_admin_keys() -> None:
    assert admits(Scope.INGEST, KeyKind.CLIENT)
    assert admits(Scope.INGEST, KeyKind.SERVER)
    assert not admits(Scope.INGEST, KeyKind.ADMIN)
    assert admits(Scope.ADMIN, KeyKind.ADMIN)
    assert not admits(Scope.ADMIN, KeyKind.SERVER)
    assert not admits(Scope.ADMIN, KeyKind.CLIENT)


def test_only_client_keys_are_granted_an_origin_and_only_the_listed_ones() -> None:
    shop = record("c", KeyKind.CLIENT, origins=("https://shop.example.com",))
    anywhere = record("d", KeyKind.CLIENT, origins=("*",))
    server = record("s", KeyKind.SERVER, origins=())

    assert origin_allowed(shop, "https://shop.example.com")
    assert origin_allowed(shop, "HTTPS://SHOP.example.com")
    assert not origin_allowed(shop, "https://evil.example.com")
    assert not origin_allowed(shop, "null")
    assert origin_allowed(anywhere, "https://anything.example")
    assert not origin_allowed(server, "https://shop.example.com")
    assert preflight_allowed([server, shop], "https://shop.example.com")
    assert not preflight_allowed([server, shop], "https://evil.example.com")


def test_a_user_token_is_the_users_under_any_live_secret_and_no_one_elses() -> None:
    old, new = b"old-secret-0123456789", b"new-secret-0123456789"
    token = user_token(old, "user-1")

    assert valid_user_token([new, old], "user-1", token)
    assert valid_user_token([old], "user-1", token.upper())
    assert not valid_user_token([new], "user-1", token)
    assert not valid_user_token([old], "user-2", token)
    assert not valid_user_token([old], None, token)
    assert not valid_user_token([old], "user-1", 12345)
    assert not valid_user_token([], "user-1", token)


def test_stripping_takes_out_exactly_the_sensitive_names() -> None:
    out = strip_fields({"email": "a@b.c", "plan": "pro", "ssn": "x"}, frozenset({"email", "ssn", "phone"}))

    assert out.values == {"plan": "pro"}
    assert out.dropped == ["email", "ssn"]
