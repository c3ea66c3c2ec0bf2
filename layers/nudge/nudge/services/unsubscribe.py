"""Honour an unsubscribe link: check its signed token, then record the scope, for the user in the
ledger and for the address on the suppression list.

The token is the only credential (the link sits in an email, so no write key): a valid one, however
old, unsubscribes its user from its scope, or, when they ask for it, from the scope's whole channel.
Recording is idempotent (an ADD to a set, a record kept once), so clicking twice (or a mail client's
one-click POST after the click) changes nothing more. `read_link` only says what a link would do:
the page a GET shows asks before anything is recorded, since mail scanners follow links.

Two records, for two reasons. The ledger's (the user's delivery record) holds for that user whatever
address they later give. The suppression list's (nudge.services.suppression) holds for the address
the message went to, whatever user id it comes back under, and erasure leaves it. The token carries
that address's key; a token made before it did falls back to the user's current address.

A link outlives identity merges: the token names the id the message went to, which an alias may
since have merged into another user (its state a pointer, `merged_into`). Dispatch adopts a merged
id's delivery record once (`Ledger.adopt`), so an unsubscribe written only there after that would
never be read. The scope is ADDed to the token's id first, then the id's pointers are followed
(consistent reads) and it is ADDed to the person they lead to: a merge that commits before that
read is followed; one that commits after it finds the scope already on the old id, where its
adoption (which comes after the merge) reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from nudge.domain.suppression import address_of
from nudge.domain.tokens import MIN_SECRET_BYTES, UnsubscribeClaim, read_token
from nudge.ports import Ledger, UsageStore
from nudge.services.erasure import chain_of
from nudge.services.suppression import SecretsUnavailable, SuppressionList


@dataclass(frozen=True)
class Unsubscribed:
    scope: str  # what was (or would be) recorded: "email:onboarding", or "email" for the whole channel

    @property
    def channel(self) -> str:
        return self.scope.partition(":")[0]

    @property
    def topic(self) -> str:
        return self.scope.partition(":")[2]


def _claim(token: str, secrets: Callable[[], Sequence[bytes]]) -> UnsubscribeClaim:
    try:
        keys = list(secrets())
    except Exception as exc:  # the secret store failing must not read as a bad link
        raise SecretsUnavailable("unsubscribe secrets could not be read") from exc
    if not keys or any(len(k) < MIN_SECRET_BYTES for k in keys):
        raise SecretsUnavailable("unsubscribe secrets are missing or too short")
    return read_token(keys, token)


def _scope(claim: UnsubscribeClaim, whole_channel: bool) -> str:
    return claim.scope.partition(":")[0] if whole_channel else claim.scope


def read_link(token: str, *, whole_channel: bool, secrets: Callable[[], Sequence[bytes]]) -> Unsubscribed:
    """What the link would unsubscribe from, recording nothing. Raises TokenInvalid or
    SecretsUnavailable."""
    return Unsubscribed(_scope(_claim(token, secrets), whole_channel))


def unsubscribe(
    token: str,
    *,
    whole_channel: bool,
    secrets: Callable[[], Sequence[bytes]],
    ledger: Ledger,
    usage: UsageStore,
    now: datetime,
    suppressions: SuppressionList | None = None,
) -> Unsubscribed:
    """Raises TokenInvalid (tampered, malformed) or SecretsUnavailable; StoreUnavailable.
    `suppressions` None records the user only (the API always passes the list)."""
    claim = _claim(token, secrets)
    scope = _scope(claim, whole_channel)
    ledger.unsubscribe(claim.user_id, scope, now)
    person = chain_of(claim.user_id, usage)[-1]
    if person != claim.user_id:
        ledger.unsubscribe(person, scope, now)
    if suppressions is not None:
        key = claim.address_key or _current_key(person, scope, usage, suppressions)
        if key is not None:
            suppressions.record(key, scope, "unsubscribe", now)
    return Unsubscribed(scope)


def _current_key(person: str, scope: str, usage: UsageStore, suppressions: SuppressionList) -> str | None:
    """For a token that carries no address key (made before tokens did): the key of the address the
    person has now on the scope's channel, if any."""
    channel = scope.partition(":")[0]
    found = usage.load_users([person]).get(person)
    address = address_of(found.value.trait_values(), channel) if found is not None else None
    return suppressions.key(channel, address) if address is not None else None
