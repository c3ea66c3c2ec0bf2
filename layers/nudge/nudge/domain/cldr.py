"""Babel (CLDR) behind the template filters of nudge.domain.formats: dates and numbers written in a
locale's way.

Imported by a filter the first time a template formats a value, never at import: Babel costs a
rendering function's cold start tens of milliseconds, and a template without `| date`, `| number`
and the like (the shipped ones) never needs it (BENCHMARKS.md section 7). A locale's data loads on
its first use in a container, then stays cached.
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from decimal import Decimal
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, format_percent

from nudge.rulebook.locales import DEFAULT_LOCALE

Number = int | float | Decimal


@lru_cache(maxsize=256)
def _babel(tag: str) -> Locale | None:
    try:
        return Locale.parse(tag, sep="-")
    except (UnknownLocaleError, ValueError):
        return None


def _locale(tag: object) -> Locale:
    """The tag's locale; a region CLDR does not know formats as its language does."""
    if isinstance(tag, str):
        found = _babel(tag) or _babel(tag.split("-")[0])
        if found is not None:
            return found
    return Locale.parse(DEFAULT_LOCALE)


def day(value: date, format: str, tag: object) -> str:
    return format_date(value, format, locale=_locale(tag))


def moment(value: datetime, format: str, zone: tzinfo | None, tag: object) -> str:
    return format_datetime(value, format, tzinfo=zone, locale=_locale(tag))


def decimal(value: Number, pattern: str | None, tag: object) -> str:
    return format_decimal(value, pattern, locale=_locale(tag))


def percent(value: Number, tag: object) -> str:
    return format_percent(value, locale=_locale(tag))


def currency(value: Number, code: str, tag: object) -> str:
    return format_currency(value, code, locale=_locale(tag))
