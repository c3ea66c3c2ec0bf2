"""Templates per locale: the version for the user's locale, dates and numbers in that locale."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from nudge.domain.render import render
from nudge.rulebook.locales import formatting_locale, pick
from nudge.rulebook.templates import TemplateFile
from tests.shipped import RULES

AT = datetime(2026, 3, 4, 23, 30, tzinfo=UTC)
FIGURES = TemplateFile(
    subject="{{ trigger.at | date }}",
    text="{{ account.mrr | number }} | {{ account.mrr | currency('EUR') }} | {{ 0.25 | percent }}",
)


@pytest.mark.parametrize(
    ("wanted", "chosen"),
    [
        (["fr"], "fr"),
        (["fr-CA"], "fr"),  # a language's version serves every region of it
        (["fr_ca"], "fr"),  # as some SDKs spell it
        (["de-DE", "fr-FR"], "fr"),  # the trait has no version: the context's locale
        (["de-DE", None], None),  # neither: the default
        (["not a locale", "fr"], "fr"),
        ([None, None], None),
    ],
)
def test_the_version_for_the_first_locale_that_has_one(wanted: list[str | None], chosen: str | None) -> None:
    assert pick(["fr", "pt-BR"], wanted) == chosen


def test_an_exact_region_wins_over_the_language() -> None:
    assert pick(["pt", "pt-BR"], ["pt-BR"]) == "pt-BR"
    assert pick(["pt", "pt-BR"], ["pt-PT"]) == "pt"


def test_numbers_and_dates_follow_the_versions_language_and_the_users_region() -> None:
    assert formatting_locale("fr", ["fr-CA"]) == "fr-CA"
    assert formatting_locale("fr", ["de-DE", "fr-FR"]) == "fr-FR"
    assert formatting_locale(None, ["en-GB"]) == "en-GB"
    assert formatting_locale(None, ["de-DE"]) == "en"  # an English text gets English numbers


def test_dates_and_numbers_are_formatted_per_locale() -> None:
    context = {"trigger": {"at": AT.isoformat()}, "account": {"mrr": 12345.5}, "user": {}}
    english = render(FIGURES, context, locale="en")
    french = render(FIGURES, context, locale="fr")
    assert english.subject == "Mar 4, 2026"
    assert english.text == "12,345.5 | €12,345.50 | 25%"
    assert french.subject == "4 mars 2026"
    # CLDR's French separates thousands with a narrow no-break space and puts the sign after
    assert french.text == "12\u202f345,5 | 12\u202f345,50\u00a0€ | 25\u00a0%"


def test_a_date_is_the_users_day_in_their_timezone() -> None:
    # 23:30 UTC on 4 March is the 5th in Tokyo
    context = {"trigger": {"at": AT.isoformat()}, "user": {"timezone": "Asia/Tokyo"}, "account": {}}
    assert render(FIGURES, context, locale="fr").subject == "5 mars 2026"


def test_a_value_the_filters_cannot_read_is_shown_as_it_is_and_a_missing_one_empty() -> None:
    template = TemplateFile(
        subject="{{ user.when | date }}", text="{{ user.n | number }}|{{ user.gone | number }}"
    )
    rendered = render(template, {"user": {"when": "soon", "n": "many"}}, locale="fr")
    assert (rendered.subject, rendered.text) == ("soon", "many|")


def test_number_with_digits_rounds_in_the_locale() -> None:
    template = TemplateFile(text="{{ user.n | number(1) }}")
    assert render(template, {"user": {"n": Decimal("1234.56")}}, locale="de").text == "1.234,6"


def test_the_shipped_french_template_is_chosen_for_a_french_user() -> None:
    french, locale = RULES.template_for("come_back", ["fr-FR", None])
    assert (french, locale) == (RULES.versions["come_back"]["fr"], "fr-FR")
    assert french.subject.startswith("Cela fait longtemps")
    default, locale = RULES.template_for("come_back", ["de-DE", None])
    assert (default, locale) == (RULES.templates["come_back"], "en")
    context_only, _ = RULES.template_for("come_back", [None, "fr-CA"])
    assert context_only is french


def test_a_region_cldr_does_not_know_formats_as_its_language() -> None:
    context = {"account": {"mrr": 1234.5}, "user": {}, "trigger": {}}
    assert render(FIGURES, context, locale="fr-QQ").text.startswith("1\u202f234,5")


def test_babel_is_imported_by_the_first_value_a_template_formats() -> None:
    # ingest, evaluate, dispatch and the sweep load the rules, and the send path loads the renderer:
    # none pays Babel's import until a template formats a date or a number
    code = (
        "import sys; import nudge.rulebook.ruleset, nudge.services.dispatch, nudge.services.sweep; "
        "import nudge.services.deliver; from nudge.domain.render import render; "
        "from nudge.rulebook.templates import TemplateFile; "
        "assert 'babel' not in sys.modules; "
        "render(TemplateFile(text='Hi {{ user.name }}'), {'user': {'name': 'A'}}, locale='fr'); "
        "assert 'babel' not in sys.modules; "
        "render(TemplateFile(text='{{ 1234.5 | number }}'), {}, locale='fr'); "
        "assert 'babel' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603 - this interpreter, our own script
