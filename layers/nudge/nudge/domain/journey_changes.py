"""What a rule file change does to the journey instances in flight, given a snapshot of them: each
live instance whose journey is no longer in the rules ends `journey_removed`, one on a step no longer
in its journey ends `step_removed` (as the engine does at the user's next evaluation:
nudge.domain.journeys). `nudge rules lint --state FILE` prints these before a deploy."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nudge.model.journeys import JourneyInstance
from nudge.rulebook.journey_specs import END
from nudge.rulebook.journeys import Journey


@dataclass(frozen=True)
class Change:
    journey: str
    step: str | None  # the step removed; None when the whole journey is gone
    instances: int  # live instances it ends
    users: int

    @property
    def reason(self) -> str:
        return "journey_removed" if self.step is None else "step_removed"


def changes(journeys: Mapping[str, Journey], live: Iterable[tuple[str, JourneyInstance]]) -> list[Change]:
    """The changes that end live instances, by journey then step; instances of a journey that is
    still there, on a step that still is, are untouched and not listed."""
    hit: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for user, instance in live:
        if not instance.live:
            continue
        journey = journeys.get(instance.journey)
        if journey is None:
            hit[(instance.journey, None)].append(user)
        elif instance.step not in (None, END) and instance.step not in journey.steps:
            hit[(instance.journey, instance.step)].append(user)
    return [
        Change(journey, step, len(users), len(set(users)))
        for (journey, step), users in sorted(hit.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
    ]
