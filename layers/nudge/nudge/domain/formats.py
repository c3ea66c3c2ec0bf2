"""The template filters that format dates and numbers in the message's locale, with Babel (CLDR).

    {{ trigger.at | date }}  {{ x | datetime }}  {{ account.mrr | number }}  {{ x | number(1) }}
    {{ rate | percent }}  {{ account.mrr | currency('EUR') }}

The locale is the render context's `locale` (nudge.rulebook.locales says which); dates and times are
shown in the user's timezone trait when they have one. Only the send path imports this module, and
Babel (nudge.domain.cldr) is imported by the first value a template formats: a function whose
templates format nothing never pays for it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from nudge.rulebook.locales import FILTER_NAMES


def _zone_of(context: Any) -> ZoneInfo | None:
    user = context.get("user")
    name = user.get("timezone") if isinstance(user, dict) else None
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _when(value: Any) -> date | datetime | None:
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _number(value: Any) -> int | float | Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


# Each filter shows a value it cannot read as it is (an empty trait stays empty): a template's
# data is the user's, and a send must not fail on it. Each imports Babel's half (nudge.domain.cldr)
# when it has a value to format: the lazy import is what keeps Babel out of the cold start.


@jinja2.pass_context
def date_filter(context: Any, value: Any, format: str = "medium") -> str:
    when = _when(value)
    if when is None:
        return "" if isinstance(value, jinja2.Undefined) or value is None else str(value)
    zone = _zone_of(context)
    if isinstance(when, datetime) and when.tzinfo is not None and zone is not None:
        when = when.astimezone(zone)
    import nudge.domain.cldr as cldr

    return cldr.day(when.date() if isinstance(when, datetime) else when, format, context.get("locale"))


@jinja2.pass_context
def datetime_filter(context: Any, value: Any, format: str = "medium") -> str:
    when = _when(value)
    if not isinstance(when, datetime):
        return date_filter(context, value)
    import nudge.domain.cldr as cldr

    zone = _zone_of(context)
    return cldr.moment(when, format, zone if when.tzinfo else None, context.get("locale"))


@jinja2.pass_context
def number_filter(context: Any, value: Any, digits: int | None = None) -> str:
    number = _number(value)
    if number is None:
        return "" if isinstance(value, jinja2.Undefined) or value is None else str(value)
    import nudge.domain.cldr as cldr

    if digits is not None:
        number = round(Decimal(str(number)), digits)
        pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
        return cldr.decimal(number, pattern, context.get("locale"))
    return cldr.decimal(number, None, context.get("locale"))


@jinja2.pass_context
def percent_filter(context: Any, value: Any) -> str:
    number = _number(value)
    if number is None:
        return "" if isinstance(value, jinja2.Undefined) or value is None else str(value)
    import nudge.domain.cldr as cldr

    return cldr.percent(number, context.get("locale"))


@jinja2.pass_context
def currency_filter(context: Any, value: Any, currency: str = "USD") -> str:
    number = _number(value)
    if number is None:
        return "" if isinstance(value, jinja2.Undefined) or value is None else str(value)
    import nudge.domain.cldr as cldr

    return cldr.currency(number, currency, context.get("locale"))


# One per name lint knows (nudge.rulebook.locales.FILTER_NAMES).
FILTERS: dict[str, Callable[..., str]] = {
    "date": date_filter,
    "datetime": datetime_filter,
    "number": number_filter,
    "percent": percent_filter,
    "currency": currency_filter,
}

assert tuple(FILTERS) == FILTER_NAMES
