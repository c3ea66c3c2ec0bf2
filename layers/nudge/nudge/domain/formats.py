"""The template filters that format dates and numbers in the message's locale, with Babel (CLDR).

    {{ trigger.at | date }}  {{ x | datetime }}  {{ account.mrr | number }}  {{ x | number(1) }}
    {{ rate | percent }}  {{ account.mrr | currency('EUR') }}

The locale is the render context's `locale` (nudge.rulebook.locales says which); dates and times are
shown in the user's timezone trait when they have one. Only the send path imports this module (and
Babel with it, tens of milliseconds): ingest, evaluate, dispatch and the sweep never pay for it. A
locale's data loads on its first use in a container, then stays cached.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, format_percent

from nudge.rulebook.locales import DEFAULT_LOCALE, FILTER_NAMES


@lru_cache(maxsize=256)
def _babel(tag: str) -> Locale | None:
    try:
        return Locale.parse(tag, sep="-")
    except (UnknownLocaleError, ValueError):
        return None


def _locale_of(context: Any) -> Locale:
    """The context's locale; a region CLDR does not know formats as its language does."""
    tag = context.get("locale")
    if isinstance(tag, str):
        found = _babel(tag) or _babel(tag.split("-")[0])
        if found is not None:
            return found
    return Locale.parse(DEFAULT_LOCALE)


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
# data is the user's, and a send must not fail on it.


@jinja2.pass_context
def date_filter(context: Any, value: Any, format: str = "medium") -> str:
    when = _when(value)
    if when is None:
        return "" if isinstance(value, jinja2.Undefined) or value is None else str(value)
    zone = _zone_of(context)
    if isinstance(when, datetime) and when.tzinfo is not None and zone is not None:
        when = when.astimezone(zone)
    day = when.date() if isinstance(when, datetime) else when
    return format_date(day, format, locale=_locale_of(context))


@jinja2.pass_context
def datetime_filter(context: Any, value: Any, format: str = "medium") -> str:
    when = _when(value)
    if not isinstance(when, datetime):
        return date_filter(context, value)
    zone = _zone_of(context)
    return format_datetime(when, format, tzinfo=zone if when.tzinfo else None, locale=_locale_of(context))


@jinja2.pass_context
def number_filter(context: Any, value: Any, digits: int | None = None) -> str:
    number = _number(value)
    if number is None:
        return "" if isinstance(value, jinja2.Undefined) or value is None else str(value)
    if digits is not None:
        number = round(Decimal(str(number)), digits)
        pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
        return format_decimal(number, pattern, locale=_locale_of(context))
    return format_decimal(number, locale=_locale_of(context))


@jinja2.pass_context
def percent_filter(context: Any, value: Any) -> str:
    number = _number(value)
    if number is None:
        return "" if isinstance(value, jinja2.Undefined) or value is None else str(value)
    return format_percent(number, locale=_locale_of(context))


@jinja2.pass_context
def currency_filter(context: Any, value: Any, currency: str = "USD") -> str:
    number = _number(value)
    if number is None:
        return "" if isinstance(value, jinja2.Undefined) or value is None else str(value)
    return format_currency(number, currency, locale=_locale_of(context))


# One per name lint knows (nudge.rulebook.locales.FILTER_NAMES).
FILTERS: dict[str, Callable[..., str]] = {
    "date": date_filter,
    "datetime": datetime_filter,
    "number": number_filter,
    "percent": percent_filter,
    "currency": currency_filter,
}

assert tuple(FILTERS) == FILTER_NAMES
