"""What a client key's messages may set. A browser or app key is public: anyone can copy it from the
page and post `identify {userId: "ceo", traits: {email: "attacker@..."}}`. So the fields that decide
who Nudge reaches and whether (email, phone, consent, and whatever the tracking plan marks
sensitive) count only with a valid user token for the message's userId, made by the product's own
server (identity verification, as Intercom and Braze do). Without one they are dropped and named,
and the rest of the message lands.

A client key's alias links the anonymous profile of its previousId only, never a known user's:
otherwise anyone could merge a user's profile into their own (or theirs into the user's). Aliases of
userIds come from the product's server.

The token travels in the message's context (`context.userToken`) and is taken out of every
message here, whatever the key: it is a credential, so it is never stored or logged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nudge.domain.keys import USER_TOKEN_FIELD, strip_fields, valid_user_token
from nudge.model.messages import (
    AccountTraits,
    Alias,
    Group,
    Identify,
    Message,
    Page,
    Screen,
    Track,
    UserTraits,
    event_name,
)
from nudge.rulebook.plan import TrackingPlan

DROPPED_HINT = (
    "dropped: a client key sends this only with a valid user token (context.userToken, an HMAC of "
    "the userId made by your server); send it from your server, or add the token"
)


@dataclass(frozen=True)
class DroppedField:
    index: int
    field: str  # dotted, as the request named it: traits.email


@dataclass(frozen=True)
class Sensitive:
    user: frozenset[str]
    account: frozenset[str]
    # Event name -> its properties the plan marks sensitive.
    events: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, plan: TrackingPlan) -> Sensitive:
        return cls(plan.sensitive_user_traits, plan.sensitive_account_traits, plan.sensitive_properties)

    def named_in(self, message: Message) -> tuple[frozenset[str], str, dict[str, Any]]:
        """The sensitive names for this message, where they sit (traits or properties) and what
        the message sets there."""
        if isinstance(message, Identify):
            return self.user, "traits", message.traits.model_dump(exclude_unset=True)
        if isinstance(message, Group):
            return self.account, "traits", message.traits.model_dump(exclude_unset=True)
        if isinstance(message, Track | Page | Screen):
            return self.events.get(event_name(message), frozenset()), "properties", message.properties
        return frozenset(), "", {}


def take_user_token(message: Message) -> Any:
    """The message's user token, removed from its context (so it goes no further)."""
    return message.context.pop(USER_TOKEN_FIELD, None) if message.context else None


def screen_messages(
    messages: Sequence[tuple[int, Message]],
    *,
    client: bool,
    sensitive: Sensitive,
    secrets: Callable[[], Sequence[bytes]],
) -> list[DroppedField]:
    """Take every message's user token out; for a client key, drop the sensitive traits and event
    properties of those without a valid one, and limit aliases to anonymous profiles (in place;
    identity resolution warns of the latter). Returns what was dropped, per message.
    `secrets` is only called when a client message sets a sensitive field; failing, no token
    verifies (fields dropped)."""
    dropped: list[DroppedField] = []
    keys: Sequence[bytes] | None = None
    for index, message in messages:
        token = take_user_token(message)
        if not client:
            continue
        if isinstance(message, Alias):
            message.limit_to_anonymous()
        names, where, given = sensitive.named_in(message)
        if not names.intersection(given):
            continue
        if keys is None:
            try:
                keys = secrets()
            except Exception:  # no secret, no verified token: the fields drop, the message lands
                keys = ()
        if valid_user_token(keys, message.userId, token):
            continue
        stripped = strip_fields(given, names)
        # Validated afresh so only what is kept counts as set (the fold writes the fields set).
        if isinstance(message, Identify):
            message.traits = UserTraits.model_validate(stripped.values)
        elif isinstance(message, Group):
            message.traits = AccountTraits.model_validate(stripped.values)
        elif isinstance(message, Track | Page | Screen):
            message.properties = stripped.values
        if where == "traits":
            _strip_context_traits(message, names)
        dropped.extend(DroppedField(index, f"{where}.{name}") for name in stripped.dropped)
    return dropped


def _strip_context_traits(message: Message, names: frozenset[str]) -> None:
    # RudderStack's SDKs also copy traits into context.traits: the dropped ones go from there too.
    traits = message.context.get("traits") if message.context else None
    if isinstance(traits, dict):
        message.context["traits"] = strip_fields(traits, names).values
