"""Segment HTTP tracking API messages (track, identify, group, page, screen, alias) and the batch envelope."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from nudge.model.numbers import MAX_SAFE_INTEGER, unsafe_numbers
from nudge.model.state import ANONYMOUS_PREFIX

IDENTITY_MISSING = "identity_missing"
ALIAS_TO_ITSELF = "alias_to_itself"
UNSAFE_NUMBER = "unsafe_number"
Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
EMAIL = re.compile(r"^[^@\s<>\"'\r\n]+@[^@\s<>\"'\r\n]+\.[^@\s<>\"'\r\n]+$")
LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
RESERVED_PREFIX = (
    f"must not start with '{ANONYMOUS_PREFIX}': Nudge keys anonymous profiles by that prefix, so such "
    "an id would be taken for one; send a device or session id as anonymousId"
)


def _numbers_in_range(title: str, data: Any, skip: frozenset[str] = frozenset()) -> Any:
    """`data` as given, or a ValidationError naming each number out of range (nudge.model.numbers)
    by its own field, so a batch keeps its other messages and the sender learns every one."""
    if not isinstance(data, dict):
        return data
    found = unsafe_numbers({k: v for k, v in data.items() if k not in skip} if skip else data)
    if not found:
        return data
    raise ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(type=PydanticCustomError(UNSAFE_NUMBER, problem), loc=path, input=None)
            for path, problem in found
        ],
    )


def _not_anonymous_key(value: str | None) -> str | None:
    """A userId (or alias previousId) that looks like an anonymous profile's key would collide with
    it: `anon:x` as a userId is the profile of anonymousId `x`."""
    if value is not None and value.startswith(ANONYMOUS_PREFIX):
        raise ValueError(RESERVED_PREFIX)
    return value


class _Message(BaseModel):
    """Fields every Segment message shares. Unknown top-level keys are kept, as Segment does."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)

    userId: Id | None = Field(default=None, description="Your id for the user.")
    anonymousId: Id | None = Field(default=None, description="A device or session id when no userId.")
    messageId: Id | None = Field(
        default=None, description="Dedupe key; a message sent again with the same id counts once."
    )
    timestamp: datetime | None = Field(default=None, description="When it happened (ISO 8601).")
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, data: Any) -> Any:
        return _numbers_in_range(cls.__name__, data)

    @field_validator("userId", "anonymousId", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        # SDKs send numeric ids as numbers; Segment stores them as strings.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("userId")
    @classmethod
    def _user_not_anonymous(cls, value: str | None) -> str | None:
        return _not_anonymous_key(value)

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _someone(self) -> _Message:
        if not self.userId and not self.anonymousId:
            raise PydanticCustomError(IDENTITY_MISSING, "userId or anonymousId is required: say who did it")
        return self

    @property
    def identity(self) -> str:
        """The key of the user this message is about."""
        return self.userId if self.userId else f"{ANONYMOUS_PREFIX}{self.anonymousId}"

    def links(self) -> list[tuple[str, str, str]]:
        """(id merged away, the userId it merges into, the field naming it): a call that carries
        both ids ties the device's anonymous profile to the user."""
        if self.userId and self.anonymousId:
            return [(f"{ANONYMOUS_PREFIX}{self.anonymousId}", self.userId, "anonymousId")]
        return []

    def dedupe_key(self) -> str:
        """messageId, or a hash of the content when the sender gave none (a retry is then the same)."""
        if self.messageId:
            return self.messageId
        body = json.dumps(self.model_dump(mode="json", exclude={"messageId"}), sort_keys=True)
        return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def _unicode_text(value: Any) -> None:
    """JSON may escape a lone surrogate (\\ud800), which is no Unicode text: it could never be
    stored or put in a message. Refused here, with the field, rather than failing at the write."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                "holds text that is not valid Unicode (a lone surrogate); send UTF-8 text"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _unicode_text(key)
            _unicode_text(item)
    elif isinstance(value, list):
        for item in value:
            _unicode_text(item)


class _Traits(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)

    @model_validator(mode="after")
    def _text(self) -> Self:
        _unicode_text(self.model_dump())
        return self


class UserTraits(_Traits):
    """Traits Nudge understands; any others are kept as given."""

    email: str | None = None
    phone: str | None = None
    plan: str | None = None
    timezone: str | None = Field(default=None, description="IANA zone, e.g. Europe/Paris.")
    locale: str | None = Field(default=None, description="e.g. en-US.")
    consent: dict[str, bool] | None = Field(
        default=None, description="Channel or topic -> opted in, e.g. {email: true, sms: false}."
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 254 or not EMAIL.match(value)):
            raise ValueError("is not an email address (name@example.com)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not an IANA time zone; use a name like America/New_York") from None
        return value

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if value is not None and not LOCALE.match(value):
            raise ValueError("is not a locale; use a tag like en-US")
        return value


class AccountTraits(_Traits):
    name: str | None = None
    plan: str | None = None
    # Bounded after coercion too: "1e19" (a string) becomes a float here, past what the walk of
    # the message's numbers saw.
    mrr: float | None = Field(
        default=None,
        ge=0,
        le=MAX_SAFE_INTEGER,
        allow_inf_nan=False,
        description=f"Monthly recurring revenue, 0 to {MAX_SAFE_INTEGER:,}.",
    )
    seats: int | None = Field(
        default=None, ge=0, le=MAX_SAFE_INTEGER, description=f"0 to {MAX_SAFE_INTEGER:,}."
    )
    cs_owner: str | None = Field(default=None, description="The customer-success owner.")


class Track(_Message):
    type: Literal["track"] = "track"
    event: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    properties: dict[str, Any] = Field(default_factory=dict)


class Page(_Message):
    """Counted as the event `page_viewed`, as a tracking plan names it."""

    type: Literal["page"] = "page"
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class Screen(_Message):
    """Counted as the event `screen_viewed`."""

    type: Literal["screen"] = "screen"
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class Identify(_Message):
    type: Literal["identify"] = "identify"
    traits: UserTraits = Field(default_factory=UserTraits)

    @model_validator(mode="before")
    @classmethod
    def _traits_in_context(cls, data: Any) -> Any:
        # RudderStack's SDKs send an identify's traits in context.traits only (Segment's at the
        # root, as RudderStack's own server reads either): where the root has none, use those.
        if isinstance(data, dict) and "traits" not in data:
            context = data.get("context")
            if isinstance(context, dict) and isinstance(context.get("traits"), dict):
                return {**data, "traits": context["traits"]}
        return data


class Group(_Message):
    type: Literal["group"] = "group"
    groupId: Id
    traits: AccountTraits = Field(default_factory=AccountTraits)

    @field_validator("groupId", mode="before")
    @classmethod
    def _group_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Alias(_Message):
    """Links a previous id to the user: the histories merge, and the previous id points at the
    user from then on. `previousId` may have been a userId or an anonymousId (Segment's SDKs send
    either), so both profiles it may name merge; but an alias sent with a client key (public)
    links the anonymous profile only (`anonymous_only`), or anyone could merge a known user."""

    type: Literal["alias"] = "alias"
    userId: Id = Field(description="The id the user is known by from now on.")
    previousId: Id = Field(description="The id the user was known by until now (userId or anonymousId).")
    # Set for a message that came with a client key; never serialized (nor part of dedupe_key).
    _anonymous_only: bool = PrivateAttr(default=False)

    @field_validator("previousId", mode="before")
    @classmethod
    def _previous_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("previousId")
    @classmethod
    def _previous_not_anonymous(cls, value: str) -> str:
        _not_anonymous_key(value)
        return value

    @property
    def anonymous_only(self) -> bool:
        """Whether this alias may link the anonymous profile of previousId only (not a userId)."""
        return self._anonymous_only

    def limit_to_anonymous(self) -> None:
        """Link only `anon:<previousId>` from now on: the alias came with a client key."""
        self._anonymous_only = True

    @model_validator(mode="after")
    def _not_itself(self) -> Self:
        if self.previousId == self.userId:
            raise PydanticCustomError(ALIAS_TO_ITSELF, "alias: previousId and userId are the same")
        return self

    def links(self) -> list[tuple[str, str, str]]:
        known = [] if self._anonymous_only else [(self.previousId, self.userId, "previousId")]
        return [
            *known,
            (f"{ANONYMOUS_PREFIX}{self.previousId}", self.userId, "previousId"),
            *super().links(),
        ]


Message = Annotated[Track | Identify | Group | Page | Screen | Alias, Field(discriminator="type")]
UsageEvent = Track | Page | Screen


def event_name(message: UsageEvent) -> str:
    if isinstance(message, Track):
        return message.event
    return "page_viewed" if isinstance(message, Page) else "screen_viewed"


def event_properties(message: UsageEvent) -> dict[str, Any]:
    """The properties of the event a message counts as. A page or screen's `name` (a top-level
    field in Segment's API) is its property `name`, so a plan can declare it and rules filter on
    it (`where: {name: Pricing}`); the top-level field wins over a `properties.name`."""
    if isinstance(message, Track) or message.name is None:
        return message.properties
    return {**message.properties, "name": message.name}


class InvalidMessage:
    """A batch entry that failed validation; the rest of the batch goes on."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors


def _keep_errors(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError as exc:
        return InvalidMessage(field_errors(exc, skip=1 if isinstance(value, dict) else 0))


# Problems named per message; past it one more item counts the rest. A message can hold thousands
# (a NaN per property, a non-boolean per consent entry): named one by one, a 500 KB body's answer
# would pass Lambda's 6 MB response limit (a 5xx for bad input). 2,500 messages x 5 items fit.
ERRORS_PER_MESSAGE = 4


def field_errors(exc: ValidationError, skip: int = 0) -> list[tuple[str, str]]:
    """(field, message) pairs, at most ERRORS_PER_MESSAGE and a count of the rest; `skip` drops
    the union tag pydantic puts first in each location."""
    return capped([describe(err, skip) for err in exc.errors(include_url=False, include_input=False)])


def capped(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The first ERRORS_PER_MESSAGE problems of one message, and one more counting the rest."""
    if len(problems) <= ERRORS_PER_MESSAGE + 1:
        return problems
    rest = len(problems) - ERRORS_PER_MESSAGE
    field = problems[ERRORS_PER_MESSAGE][0]
    return [
        *problems[:ERRORS_PER_MESSAGE],
        (
            field,
            f"and {rest} more problems in this message, {field} the first of them: fix those named, "
            "then send it again",
        ),
    ]


TAGS = frozenset({"track", "identify", "group", "page", "screen", "alias"})


def describe(err: Any, skip: int = 0) -> tuple[str, str]:
    """One pydantic error as (dotted field, plain message naming the fix)."""
    kind = err["type"]
    loc = [p for p in err["loc"][skip:] if p != "body"]
    if loc and loc[0] in TAGS:
        loc = loc[1:]
    field = ".".join(str(p) for p in loc) or "body"
    message: str = err["msg"]
    if kind == "union_tag_invalid":
        return "type", "type must be one of track, identify, group, page, screen, alias"
    if kind == "union_tag_not_found":
        return "type", "type is required (track, identify, group, page, screen or alias)"
    if kind == IDENTITY_MISSING:
        return "userId", message
    if kind == ALIAS_TO_ITSELF:
        return "previousId", message
    if kind == UNSAFE_NUMBER:
        return field, f"{field} {message}"
    if kind == "json_invalid":
        return "body", "body is not valid JSON"
    if kind == "missing":
        return field, f"{field} is required"
    if message.startswith("Value error, "):
        return field, f"{field} {message.removeprefix('Value error, ')}"
    return field, f"{field}: {message[0].lower()}{message[1:]}"


# Each batch entry is validated on its own so one bad message doesn't sink the others. The JSON
# schema (and the OpenAPI document) still shows the real message shapes.
LenientMessage = Annotated[Message, WrapValidator(_keep_errors)]


class Batch(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)

    batch: list[LenientMessage] = Field(description="Up to 2,500 messages, 500 KB in all.")
    context: dict[str, Any] = Field(default_factory=dict, description="Merged into each message's context.")
    integrations: dict[str, Any] = Field(default_factory=dict)
    sentAt: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, data: Any) -> Any:
        # The envelope's own fields; each message of `batch` checks its own numbers.
        return _numbers_in_range(cls.__name__, data, skip=frozenset({"batch"}))


def build_models() -> None:
    """Build the message models now. They are deferred (defer_build): only the ingest functions
    validate them on every request, and they call this at cold start so that their first request
    does not pay for it; every other function loads them but builds one only on the rare path that
    makes one (a journey's update step), so never at its cold start."""
    for model in (Track, Page, Screen, Identify, Group, Alias, UserTraits, AccountTraits, Batch):
        model.model_rebuild()
