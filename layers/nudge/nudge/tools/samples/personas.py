"""Who the generated users are: the personas, how many users follow each, the events an
established user repeats, and the profiles a history hands to tests and the demo.

Each user follows one persona: activates quickly and becomes habitual, stalls at one of the
three onboarding steps, becomes a power user who keeps hitting the upgrade wall, declines after
some habitual weeks, or goes dormant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from nudge.tools.samples.catalog import HIGH_VALUE_MRR


class Persona(StrEnum):
    """How a user behaves over the window."""

    ACTIVATED = "activated"  # all three onboarding steps within days, then habitual
    POWER = "power"  # many sessions a week, automations, integrations, hits premium features
    STALLED_SETUP = "stalled_setup"  # signed up, never finished setup (a few logins at most)
    STALLED_NO_PROJECT = "stalled_no_project"  # finished setup, never created a project
    STALLED_NO_INVITE = "stalled_no_invite"  # created a project, never invited a teammate
    DECLINER = "decliner"  # habitual for some weeks, then under 2 meaningful sessions a week
    DORMANT = "dormant"  # active, then nothing at all for the last 30+ days


# Shares of all users, roughly what a B2B product with self-serve signup sees.
PERSONA_SHARES: Mapping[Persona, float] = {
    Persona.ACTIVATED: 0.28,
    Persona.POWER: 0.08,
    Persona.STALLED_SETUP: 0.16,
    Persona.STALLED_NO_PROJECT: 0.10,
    Persona.STALLED_NO_INVITE: 0.12,
    Persona.DECLINER: 0.13,
    Persona.DORMANT: 0.13,
}

# Recurring meaningful events of an established user (one-off ones are placed separately).
Mix = tuple[tuple[str, ...], tuple[float, ...]]
HABIT_MIX: Mix = (
    ("project_created", "report_exported", "automation_created", "teammate_invited"),
    (5, 4, 1, 0.6),
)
POWER_MIX: Mix = (
    ("project_created", "report_exported", "automation_created", "teammate_invited"),
    (4, 4, 4, 1),
)
SOLO_MIX: Mix = (("project_created", "report_exported"), (3, 2))


@dataclass(frozen=True)
class UserProfile:
    """Who a generated user is, for tests and the demo (the messages carry the same facts)."""

    user_id: str
    account_id: str
    persona: Persona
    signed_up: datetime
    timezone: str


@dataclass(frozen=True)
class AccountProfile:
    """A generated account as it stands at the end of the window."""

    account_id: str
    name: str
    plan: str
    mrr: int
    seats: int
    cs_owner: str
    created: datetime
    members: tuple[str, ...]
    at_risk: bool  # the high-value account whose users mostly decline or go dormant

    @property
    def high_value(self) -> bool:
        return self.mrr >= HIGH_VALUE_MRR
