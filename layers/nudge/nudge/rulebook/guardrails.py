"""rules/guardrails.yaml: what may reach a user, and when.

Caps per channel and across channels, per journey, quiet hours, consent, the global control
group, escalation suppression, and the sender's identity and links. Checked for every decision
before anything is sent (nudge.domain.verdicts). Per-rule choices (holdout, topic,
transactional, quiet-hours behaviour) live on the trigger in triggers.yaml.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

from nudge.model.durations import format_duration, parse_duration
from nudge.rulebook.yamlfile import (
    RuleFileError,
    RuleProblem,
    YamlDoc,
    did_you_mean,
    display_path,
    load_yaml,
    validate,
)

GUARDRAILS_FILE = "guardrails.yaml"

Channel = Literal["email", "push", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "push", "sms")
QuietChoice = Literal["defer", "drop"]
ConsentMode = Literal["opt_in", "opt_out"]


def _parse_window(value: Any) -> str | timedelta:
    """`day` and `week` are calendar windows in the user's timezone; anything else is rolling."""
    if value in ("day", "week"):
        return str(value)
    return parse_duration(value)


def _format_window(value: str | timedelta) -> str:

    return value if isinstance(value, str) else format_duration(value)


Window = Annotated[
    str | timedelta, BeforeValidator(_parse_window), PlainSerializer(_format_window, return_type=str)
]


def _parse_clock(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        hours, minutes = (int(part) for part in value.strip().split(":"))
        if hours < 24 and minutes < 60:
            return time(hours, minutes)
    raise ValueError(f"{value!r} is not a time of day; write it as HH:MM, e.g. 21:00")


ClockTime = Annotated[
    time, BeforeValidator(_parse_clock), PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str)
]


def _parse_percent(value: Any) -> float:
    text = str(value).strip()
    number = float(text[:-1]) if text.endswith("%") else float(text)
    if not 0 <= number <= 100:
        raise ValueError(f"{value!r} is not a percentage between 0 and 100")
    return number


Percent = Annotated[
    float,
    BeforeValidator(_parse_percent),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 100},
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?%$"},
            ],
            "examples": ["5%"],
        }
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Cap(_Strict):
    max: int = Field(ge=0, description="At most this many messages ...")
    per: Window = Field(
        description="... per `day` or `week` (the user's calendar) or a rolling 24h, 7d, 30d."
    )

    def rolling(self) -> timedelta | None:
        return self.per if isinstance(self.per, timedelta) else None


class Caps(_Strict):
    email: list[Cap] = Field(default_factory=list)
    push: list[Cap] = Field(default_factory=list)
    sms: list[Cap] = Field(default_factory=list)
    in_app: list[Cap] = Field(default_factory=list)
    all: list[Cap] = Field(default_factory=list, description="Every channel together (the global cap).")

    def of(self, channel: str) -> list[Cap]:
        caps: list[Cap] = getattr(self, channel, [])
        return caps


class QuietHours(_Strict):
    start: ClockTime = Field(description="From this time of day ...")
    end: ClockTime = Field(description="... to this one, in the user's timezone (may span midnight).")
    channels: list[Channel] = Field(default_factory=lambda: list[Channel](["push", "sms"]))
    fallback_timezone: str = Field(
        default="UTC", description="For a user with no (or an unknown) timezone trait."
    )
    when_quiet: QuietChoice = Field(
        default="defer", description="defer: send when the quiet hours end; drop: do not send."
    )

    @field_validator("fallback_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}; use an IANA name like America/New_York") from None
        return value


class Consent(_Strict):
    """opt_out: send unless the user said no (consent trait false, or unsubscribed);
    opt_in: send only when the user's consent trait for the channel is true."""

    email: ConsentMode = "opt_out"
    push: ConsentMode = "opt_in"
    sms: ConsentMode = "opt_in"
    # In the product, to a signed-in user: nothing to opt into; an unsubscribe from it still holds.
    in_app: ConsentMode = "opt_out"


class Holdout(_Strict):
    control_group: Percent = Field(
        default=0.0,
        description="Users (by a hash of their id) who never get marketing: the baseline for lift.",
    )
    salt: str = Field(default="nudge", min_length=1, description="Change it to draw a new control group.")


class Escalations(_Strict):
    suppress_marketing: bool = Field(
        default=True, description="No marketing to an account while it has an open CS escalation."
    )
    open_for: Annotated[timedelta, BeforeValidator(parse_duration)] = Field(
        default=timedelta(days=30), description="An escalation nobody marks handled closes itself after this."
    )


class Sender(_Strict):
    email_from: str = Field(description='e.g. "Acme <hello@acme.example>"; a verified SES identity.')
    reply_to: str | None = None
    postal_address: str | None = Field(
        default=None,
        description=(
            "The sender's postal address, shown with the unsubscribe link in the footer of every "
            "marketing email (CAN-SPAM). Needed as soon as a trigger sends marketing email."
        ),
        examples=["Acme Inc., 1 Main Street, Springfield, IL 62701, USA"],
    )
    # Kept so that a file still setting it gets lint's explanation rather than "extra input".
    unsubscribe_mailto: str | None = Field(
        default=None,
        deprecated=True,
        description="Not supported: nothing reads that mailbox. Remove it (see nudge rules lint).",
    )
    sms_sender_id: str | None = Field(default=None, max_length=11)


class GuardrailsFile(_Strict):
    caps: Caps = Field(default_factory=Caps)
    journeys: dict[str, list[Cap]] = Field(
        default_factory=dict, description="Caps per journey (a trigger's kind, or its journey:)."
    )
    quiet_hours: QuietHours | None = None
    consent: Consent = Field(default_factory=Consent)
    holdout: Holdout = Field(default_factory=Holdout)
    escalations: Escalations = Field(default_factory=Escalations)
    sender: Sender
    links: dict[str, str] = Field(default_factory=dict, description="URLs templates use as links.<name>.")


@dataclass(frozen=True)
class Guardrails:
    spec: GuardrailsFile
    file: str

    def longest_window(self) -> timedelta:
        """How far back the delivery record must remember sends for every cap to be judged."""
        caps = [*self.spec.caps.email, *self.spec.caps.push, *self.spec.caps.sms, *self.spec.caps.all]
        caps += [cap for journey in self.spec.journeys.values() for cap in journey]
        longest = timedelta(days=8)  # a calendar week seen from any timezone
        for cap in caps:
            rolling = cap.rolling()
            if rolling is not None:
                longest = max(longest, rolling)
        return longest


MAILTO_UNSUPPORTED = (
    "sender.unsubscribe_mailto: Nudge does not advertise a mailto: unsubscribe any more, because "
    "nothing reads that mailbox: someone who unsubscribed by email would keep getting mail. Remove "
    "this line. Every marketing email has a one-click unsubscribe link (List-Unsubscribe) and a "
    "visible one in its footer."
)


def load_guardrails(
    rules_dir: Path, journeys: set[str], problems: list[RuleProblem], marketing_email: Sequence[str] = ()
) -> Guardrails | None:
    """Load rules/guardrails.yaml; `journeys` are the ones triggers name (a cap on another is a typo),
    `marketing_email` the triggers that send marketing email (they need the sender's postal address)."""

    try:
        doc: YamlDoc = load_yaml(rules_dir / GUARDRAILS_FILE, display_path(rules_dir, GUARDRAILS_FILE))
        spec = validate(doc, GuardrailsFile)
    except RuleFileError as exc:
        problems.extend(exc.problems)
        return None
    for name in spec.journeys:
        if name not in journeys:
            problems.append(
                doc.problem(
                    ("journeys", name),
                    f"no trigger is in journey '{name}'{did_you_mean(name, journeys)}; "
                    f"journeys: {', '.join(sorted(journeys))}",
                )
            )
    if "unsubscribe_mailto" in spec.sender.model_fields_set:
        problems.append(doc.problem(("sender", "unsubscribe_mailto"), MAILTO_UNSUPPORTED))
    if marketing_email and not (spec.sender.postal_address or "").strip():
        problems.append(
            doc.problem(
                ("sender",),
                "sender.postal_address is missing: every marketing email shows the sender's postal "
                f"address in its footer (CAN-SPAM), and {_listed(marketing_email)} send marketing "
                f"email. Add it under sender: in {GUARDRAILS_FILE}, e.g. "
                'postal_address: "Acme Inc., 1 Main Street, Springfield, IL 62701, USA" '
                "(or mark a trigger transactional: true if it is not marketing)",
            )
        )
    for name, url in spec.links.items():
        if not url.startswith(("https://", "http://")):
            problems.append(doc.problem(("links", name), f"link '{name}' must be an http(s) URL"))
    return Guardrails(spec, doc.file)


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"trigger{'s' if len(names) > 1 else ''} {shown}{more}"
