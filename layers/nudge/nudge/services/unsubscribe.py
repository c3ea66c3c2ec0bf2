"""Honour an unsubscribe link: check its signed token, then record the scope in the ledger.

The token is the only credential (the link sits in an email, so no write key): a valid one
unsubscribes its user from its scope, or, when they ask for it, from the scope's whole channel.
Recording is an idempotent ADD to a set, so clicking twice (or a mail client's one-click POST
after the click) changes nothing more.

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
from datetime import datetime, timedelta

from nudge.domain.tokens import DEFAULT_MAX_AGE, MIN_SECRET_BYTES, read_token
from nudge.ports import Ledger, UsageStore
from nudge.services.erasure import chain_of


class SecretsUnavailable(Exception):
    """The signing secrets could not be read (or are unusable): retry later, not the user's fault."""


@dataclass(frozen=True)
class Unsubscribed:
    scope: str  # what was recorded: "email:onboarding", or "email" for the whole channel

    @property
    def channel(self) -> str:
        return self.scope.partition(":")[0]

    @property
    def topic(self) -> str:
        return self.scope.partition(":")[2]


def parse_secrets(raw: str) -> tuple[bytes, ...]:
    """Secrets as the parameter stores them: comma-separated, the signing one first."""
    return tuple(s.strip().encode() for s in raw.split(",") if s.strip())


def unsubscribe(
    token: str,
    *,
    whole_channel: bool,
    secrets: Callable[[], Sequence[bytes]],
    ledger: Ledger,
    usage: UsageStore,
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> Unsubscribed:
    """Raises TokenInvalid (tampered, malformed), TokenExpired, or SecretsUnavailable."""
    try:
        keys = list(secrets())
    except Exception as exc:  # the secret store failing must not read as a bad link
        raise SecretsUnavailable("unsubscribe secrets could not be read") from exc
    if not keys or any(len(k) < MIN_SECRET_BYTES for k in keys):
        raise SecretsUnavailable("unsubscribe secrets are missing or too short")
    claim = read_token(keys, token, now, max_age)
    scope = claim.scope.partition(":")[0] if whole_channel else claim.scope
    ledger.unsubscribe(claim.user_id, scope, now)
    person = chain_of(claim.user_id, usage)[-1]
    if person != claim.user_id:
        ledger.unsubscribe(person, scope, now)
    return Unsubscribed(scope)
