"""Templates per locale, and dates and numbers formatted per locale (Babel: CLDR's data).

A template `templates/come_back.yaml` is the default; `templates/come_back.fr.yaml` (or
`come_back.fr-CA.yaml`) beside it is its French version. A message is rendered from the version
for the user's `locale` trait, else for the locale their SDK reports (`context.locale`), else the
default; a tag matches exactly (`fr-CA`) or by language (`fr-CA` takes `fr`). Lint holds every
version of a template to the same variables as its default (nudge.rulebook.templates).

Templates format values with filters that follow the message's locale: `{{ trigger.at | date }}`
("Mar 4, 2026" / "4 mars 2026"), `| datetime`, `| number` ("1,234.5" / "1 234,5"),
`| percent`, `| currency('EUR')`. The locale is the chosen version's (a French template formats
French numbers), refined by the user's region when their language is the template's (`fr-CA`);
the default template formats in DEFAULT_LOCALE unless the user's language is its own (`en-GB`).
Dates and times are shown in the user's timezone trait when they have one.

The filters live in nudge.domain.formats, imported only where messages are rendered. Why Babel
and not the standard library: `locale` needs the operating system's locale data (a Lambda image
has next to none) and sets one locale for the whole process; Babel carries CLDR's data for every
locale, is pure Python with no dependencies, and loads a locale's data on its first use (one file,
then cached). Its import and a locale's first use cost tens of milliseconds, on the send path only
(`python -X importtime -c "import babel.dates, babel.numbers"` shows the import).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence

DEFAULT_LOCALE = "en"  # the language of a template without a locale in its name
# The filters that format per locale (nudge.domain.formats implements them with Babel, imported only
# where messages are rendered; lint needs only their names).
FILTER_NAMES = ("date", "datetime", "number", "percent", "currency")
# A language, optionally a script and/or a region: fr, fr-CA, pt-BR, zh-Hant, zh-Hant-TW.
_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z]{4})?(?:[-_](?:[A-Za-z]{2}|\d{3}))?$")


def is_tag(tag: str) -> bool:
    return bool(_TAG.match(tag))


def normal(tag: str) -> str:
    """`fr_ca`, `FR-ca` -> `fr-CA`: one spelling per locale, as file names and matches use it."""
    parts = tag.replace("_", "-").split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        out.append(part.title() if len(part) == 4 else part.upper())
    return "-".join(out)


def split_stem(stem: str) -> tuple[str, str | None]:
    """`come_back.fr` -> ("come_back", "fr"); `come_back` -> ("come_back", None)."""
    name, dot, tag = stem.partition(".")
    return (name, tag) if dot else (stem, None)


def _language(tag: str) -> str:
    return tag.split("-")[0]


def pick(available: Collection[str], wanted: Sequence[str | None]) -> str | None:
    """The version of a template for the first wanted locale that has one, exact tag first then
    language; None: the default."""
    by_tag = {normal(t): t for t in available}
    for raw in wanted:
        if not isinstance(raw, str) or not is_tag(raw.strip()):
            continue
        tag = normal(raw.strip())
        if tag in by_tag:
            return by_tag[tag]
        language = _language(tag)
        if language in by_tag:
            return by_tag[language]
    return None


def formatting_locale(version: str | None, wanted: Sequence[str | None]) -> str:
    """The locale numbers and dates are formatted in: the version's, or the user's own tag when
    it is the same language (`fr-CA` for the `fr` version; `en-GB` for the default)."""
    base = normal(version) if version else DEFAULT_LOCALE
    for raw in wanted:
        if isinstance(raw, str) and is_tag(raw.strip()):
            tag = normal(raw.strip())
            if _language(tag) == _language(base):
                return tag
    return base


def _unrendered(value: object, *args: object) -> str:
    return str(value)


# For lint's environment, which parses and checks filter names but never renders.
LINT_FILTERS: dict[str, Callable[..., str]] = dict.fromkeys(FILTER_NAMES, _unrendered)
