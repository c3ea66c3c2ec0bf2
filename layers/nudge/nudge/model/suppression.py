"""The suppression list's record: an address (as a keyed hash) that must not get a scope of messages.

Kept apart from the user (keyed by the address, not the user id), so erasing the user leaves it: a
person who unsubscribed, was erased and comes back under any id with the same address still gets
nothing in that scope. Written by unsubscribe links today; SES bounces and complaints (a later
issue) write the same records with their own `reason`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

# unsubscribe: the person asked (marketing in `scope`); complaint: they marked a message as spam
# (marketing in `scope`); bounce: the address does not exist (every message, transactional too);
# soft_bounce: mail to it bounced transiently SOFT_BOUNCE_LIMIT times in a window (every message).
# endpoint_disabled: SNS reported a device token's push endpoint disabled (every push to that token).
Reason = Literal["unsubscribe", "complaint", "bounce", "soft_bounce", "endpoint_disabled"]
REASONS: tuple[Reason, ...] = ("unsubscribe", "complaint", "bounce", "soft_bounce", "endpoint_disabled")


@dataclass(frozen=True)
class Suppression:
    key: str  # "email#<hex HMAC-SHA256>" or "phone#<hex>": nudge.domain.suppression.address_key
    scope: str  # as unsubscribes: a channel ("email"), "channel:topic", or "all"
    reason: Reason
    at: datetime  # when it was first recorded
