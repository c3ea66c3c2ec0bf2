"""The suppression list's keys and what a record blocks, pure.

An address is stored as HMAC-SHA256(secret, "<kind>:<normalised address>"), hex: the store holds
no address, and without the secret nobody can test a list of known addresses against it (a plain
hash of an email address falls to a dictionary in seconds). The secret is an SSM SecureString like
the unsubscribe secrets, but it is never retired: an address keyed with a secret nobody holds any
more cannot be found again. Several secrets may be listed: the first keys new records, every one is
looked up.

Normalisation, so one address is one key however it is written: an email address is taken out of
"Name <address>", stripped, NFC-normalised and lower-cased (domains are case-blind, and so are the
local parts of every provider that matters; dots and +tags are kept: they may be different people);
a phone number loses spaces, dots, dashes and parentheses, and a leading international 00 becomes +.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from nudge.model.suppression import Reason, Suppression

AddressKind = Literal["email", "phone", "device"]
# The trait each channel sends to, and so the kind of address its suppressions are kept under. A
# push "address" is the device token: SNS reports a token's endpoint disabled (app uninstalled,
# token expired), and that token is then suppressed, so it is not used again; a new token is a new key.
CHANNEL_KINDS: Mapping[str, AddressKind] = {"email": "email", "sms": "phone", "push": "device"}
ADDRESS_TRAITS: Mapping[AddressKind, str] = {"email": "email", "phone": "phone", "device": "push_token"}
# Reasons that block transactional messages too: mail to an address that does not exist bounces
# whatever it says, and a disabled device endpoint takes nothing. The others stop marketing only.
BLOCKS_TRANSACTIONAL: frozenset[Reason] = frozenset({"bounce", "soft_bounce", "endpoint_disabled"})
MIN_SECRET_BYTES = 16

_ANGLE = re.compile(r"<([^<>]*)>\s*$")
_PHONE_NOISE = re.compile(r"[\s().\-/]")
_PHONE = re.compile(r"\+?\d{3,20}")


def normalise(kind: AddressKind, address: str) -> str | None:
    """`address` as it is keyed, or None when it is no address of that kind."""
    text = unicodedata.normalize("NFC", address).strip()
    if kind == "email":
        inner = _ANGLE.search(text)
        text = (inner.group(1) if inner else text).strip().lower()
        local, at, domain = text.rpartition("@")
        return text if at and local and domain and not any(c.isspace() for c in text) else None
    if kind == "device":
        return text if text and not any(c.isspace() for c in text) else None
    text = _PHONE_NOISE.sub("", text)
    if text.startswith("00"):
        text = "+" + text[2:]
    return text if _PHONE.fullmatch(text) else None


def _check(secrets: Sequence[bytes]) -> None:
    if not secrets or any(len(s) < MIN_SECRET_BYTES for s in secrets):
        raise ValueError(f"suppression secrets must be at least {MIN_SECRET_BYTES} bytes each")


def address_keys(secrets: Sequence[bytes], kind: AddressKind, address: str) -> list[str]:
    """The address's key under each secret (the first is the one new records get); [] when the
    address is not one of `kind`."""
    _check(secrets)
    normal = normalise(kind, address)
    if normal is None:
        return []
    message = f"{kind}:{normal}".encode()
    return [f"{kind}#{hmac.new(s, message, hashlib.sha256).hexdigest()}" for s in secrets]


def address_key(secrets: Sequence[bytes], kind: AddressKind, address: str) -> str | None:
    """The key a new record of this address gets (the first secret's); None if it is no address."""
    keys = address_keys(secrets, kind, address)
    return keys[0] if keys else None


def kind_of(channel: str) -> AddressKind | None:
    return CHANNEL_KINDS.get(channel)


def address_of(traits: Mapping[str, Any], channel: str) -> str | None:
    """The address `channel` sends to, from the user's traits (None: none)."""
    kind = kind_of(channel)
    value = traits.get(ADDRESS_TRAITS[kind]) if kind else None
    if value is None or isinstance(value, bool):
        return None
    return str(value).strip() or None


def blocking(
    suppressions: Iterable[Suppression], channel: str, topic: str, transactional: bool
) -> Suppression | None:
    """The first record that forbids a message on `channel` about `topic` to the address, if any.

    Scopes read as unsubscribes do: the channel, `channel:topic`, or `all`. Marketing is blocked by
    any matching record; a transactional message only by a reason in BLOCKS_TRANSACTIONAL."""
    scopes = {"all", channel, f"{channel}:{topic}"}
    for record in suppressions:
        if record.scope in scopes and (not transactional or record.reason in BLOCKS_TRANSACTIONAL):
            return record
    return None
