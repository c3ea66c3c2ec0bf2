"""What a channel sends: an email, an SMS, a push, an escalation case for customer success."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Email:
    to: str
    sender: str  # "Nudge <hello@example.com>" or a bare address; must be an SES identity
    reply_to: str | None
    subject: str
    text: str
    html: str  # "" for a text-only email
    unsubscribe_url: str | None = None  # https, one-click (RFC 8058); None for transactional mail
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sms:
    to: str  # E.164
    text: str
    transactional: bool = True
    sender_id: str | None = None


@dataclass(frozen=True)
class Push:
    endpoint_arn: str
    title: str
    body: str
    data: Mapping[str, str] = field(default_factory=dict)


TREND_WEEKS = 4


class WeekUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    week_start: date
    active_users: int = Field(ge=0)
    sessions: int = Field(ge=0)


class EscalationCase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    case_id: str
    account_id: str = Field(min_length=1)
    account_name: str
    plan: str | None = None
    mrr: float | None = None
    seats: int | None = None
    cs_owner: str | None = None
    score: float
    band: str
    usage_trend: list[WeekUsage] = Field(default_factory=list, max_length=TREND_WEEKS)
    rule: str = Field(min_length=1)
    reason: str
    facts: dict[str, Any] = Field(default_factory=dict)
    recommended_next_step: str
    user_id: str | None = None  # the user whose evaluation raised it, when there is one
    opened_at: AwareDatetime
