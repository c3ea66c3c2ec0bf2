"""Which event made a rule fire, and with what properties: the `trigger` a template reads.

The trigger of a rule, for a user, is the event among those its condition says the user did
(count, days_since within, did, sum, last; not under `not:` and not an absence) that the user
did most recently; with a `where:` filter, its most recent occurrence with one of those values.
Its properties are the ones the tracking plan keeps of that event: for a property the condition
filters on, the matching value seen most recently; otherwise its last value (`last: true`), or
else the dimension's value seen most recently. Sums are not properties of one event and are not
included. Pure: a function of the condition and the user's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from nudge.conditions.tree import Subject
from nudge.model.decisions import TriggerEvent
from nudge.model.state import UserState


def trigger_of(subjects: Sequence[Subject], user: UserState) -> TriggerEvent | None:
    best: tuple[datetime, Subject] | None = None
    for subject in subjects:
        at = _last_time(subject, user)
        if at is not None and (best is None or at > best[0]):
            best = (at, subject)
    if best is None:
        return None
    at, subject = best
    stats = user.events[subject.event]
    properties: dict[str, str | int | float | bool] = {}
    props = stats.props
    if props is not None:
        for dim in props.values:
            newest = props.newest_value(dim)
            if newest is not None:
                properties[dim] = newest
        for prop, stamped in props.last.items():
            if isinstance(stamped.v, str | int | float | bool):
                properties[prop] = stamped.v
        if subject.where is not None:
            prop, values = subject.where
            matching = props.newest_value(prop, values)
            if matching is not None:
                properties[prop] = matching
    return TriggerEvent(event=subject.event, at=at, properties=properties)


def _last_time(subject: Subject, user: UserState) -> datetime | None:
    stats = user.events.get(subject.event)
    if stats is None:
        return None
    if subject.where is None:
        return stats.last
    prop, values = subject.where
    seen = stats.props.values.get(prop, {}) if stats.props is not None else {}
    return max((seen[v].last for v in values if v in seen), default=None)


def last_values(user: UserState) -> dict[str, dict[str, object]]:
    """The user's latest kept value of each `last: true` property, by event: a template's `last`."""
    return {
        name: {prop: stamped.v for prop, stamped in stats.props.last.items()}
        for name, stats in user.events.items()
        if stats.props is not None and stats.props.last
    }
