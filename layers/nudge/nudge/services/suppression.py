"""The suppression list as the use cases need it: an address's key, what is recorded against it,
and recording. Read by dispatch (so a suppressed address takes no slot or cap) and again by the
action functions just before sending (the address sent to is the one checked); written by
unsubscribe links. See nudge.domain.suppression for the keys and nudge.model.suppression for why
it outlives erasure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nudge.domain.suppression import MIN_SECRET_BYTES, address_key, address_keys, address_of, kind_of
from nudge.model.suppression import Reason, Suppression
from nudge.ports import SuppressionStore


class SecretsUnavailable(Exception):
    """Signing or keying secrets could not be read (or are unusable): retry later, nobody's fault."""


@dataclass(frozen=True)
class SuppressionList:
    store: SuppressionStore
    # The keying secrets (SSM, comma-separated): the first keys new records, all are looked up.
    secrets: Callable[[], Sequence[bytes]]

    def _secrets(self) -> list[bytes]:
        try:
            secrets = list(self.secrets())
        except Exception as exc:  # the secret store failing is not the address's fault
            raise SecretsUnavailable("suppression secrets could not be read") from exc
        if not secrets or any(len(s) < MIN_SECRET_BYTES for s in secrets):
            raise SecretsUnavailable("suppression secrets are missing or too short")
        return secrets

    def key(self, channel: str, address: str) -> str | None:
        """The key a record of this address gets; None for a channel without addresses (push) or
        a value that is no address."""
        kind = kind_of(channel)
        return address_key(self._secrets(), kind, address) if kind else None

    def of_address(self, channel: str, address: str) -> list[Suppression]:
        kind = kind_of(channel)
        keys = address_keys(self._secrets(), kind, address) if kind else []
        return self.store.find(keys) if keys else []

    def of_traits(self, traits: Mapping[str, Any], channels: Iterable[str]) -> dict[str, list[Suppression]]:
        """What is recorded against the addresses `channels` would send to, by channel."""
        found: dict[str, list[Suppression]] = {}
        for channel in dict.fromkeys(channels):
            address = address_of(traits, channel)
            if address is not None:
                found[channel] = self.of_address(channel, address)
        return found

    def record(self, key: str, scope: str, reason: Reason, now: datetime) -> None:
        self.store.add(Suppression(key=key, scope=scope, reason=reason, at=now))
