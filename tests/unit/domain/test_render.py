"""Rendering message templates: missing traits, hostile traits, escaping, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nudge.domain.render import (
    SUBJECT_MAX_CHARS,
    TRAIT_MAX_CHARS,
    Rendered,
    RenderError,
    render,
    with_footer,
)
from nudge.rulebook.template_loader import load_templates
from nudge.rulebook.templates import TemplateFile
from nudge.rulebook.yamlfile import RuleProblem

REPO = Path(__file__).resolve().parents[3]


def context(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "user": {"first_name": "Ada", "email": "ada@example.com", "plan": "pro"},
        "account": {"name": "Acme", "plan": "team", "mrr": 490, "seats": 12, "cs_owner": "Sam"},
        "facts": {"summary": "3 projects, last active 9 days ago"},
        "links": {"dashboard": "https://app.example.com/d", "unsubscribe": "https://x.example.com/u?t=1"},
        "next_step": "Book a call",
        "rule": "declining",
    }
    base.update(overrides)
    return base


def test_a_trait_renders_into_every_part() -> None:
    # Given a template using a trait in subject, text and html
    template = TemplateFile(
        subject="Hi {{ user.first_name }}",
        text="Hi {{ user.first_name }}",
        html="<p>{{ user.first_name }}</p>",
    )

    # When it renders
    out = render(template, context())

    # Then each part holds the trait
    assert (out.subject, out.text, out.html) == ("Hi Ada", "Hi Ada", "<p>Ada</p>")


def test_a_missing_trait_falls_back_to_the_templates_default() -> None:
    # Given a user without a first name
    template = TemplateFile(
        subject="{{ user.first_name or 'Hi' }}, welcome", text="Hi {{ user.first_name or 'there' }}"
    )

    # When it renders
    out = render(template, context(user={"plan": "free"}))

    # Then the `or` fallback is used, and nothing says "Undefined"
    assert out.subject == "Hi, welcome"
    assert out.text == "Hi there"


def test_a_user_without_an_account_renders_the_account_parts_empty() -> None:
    # Given a template about the account, and no account at all in the context
    template = TemplateFile(
        text="[{{ account.name }}|{{ account.cs_owner.email }}|{{ account.name or 'your workspace' }}]"
    )
    ctx = context()
    del ctx["account"]

    # When it renders
    out = render(template, ctx)

    # Then missing values are empty (chained lookups included) and fallbacks still apply
    assert out.text == "[||your workspace]"


def test_line_breaks_in_a_trait_cannot_add_a_line_to_the_text() -> None:
    # Given a first name holding CR, LF and TAB
    template = TemplateFile(text="Hi {{ user.first_name }}, welcome")

    # When it renders
    out = render(template, context(user={"first_name": "Ada\r\nUnsubscribe here: https://evil.example\tnow"}))

    # Then the text is still one line, with spaces where the breaks were
    assert out.text == "Hi Ada  Unsubscribe here: https://evil.example now, welcome"
    assert "\n" not in out.text


@pytest.mark.parametrize(
    ("hostile", "expected"),
    [
        ("\x00", "Ada"),
        ("\x07", "Ada"),
        ("\x1b[31m", "A[31mda"),  # the escape goes; the printable rest of the sequence stays
        ("\x7f", "Ada"),
        ("\x85", "Ada"),
        ("\x9b", "Ada"),
        ("\u2028", "Ada"),
        ("\u2029", "Ada"),
        ("\u202e", "Ada"),
        ("\u2066", "Ada"),
    ],
)
def test_control_characters_in_a_trait_are_dropped(hostile: str, expected: str) -> None:
    # Given a trait holding a control character (C0, C1, line separator or bidi override)
    template = TemplateFile(text="{{ user.first_name }}")

    # When it renders
    out = render(template, context(user={"first_name": f"A{hostile}da"}))

    # Then the character is gone and the visible text is left
    assert out.text == expected


def test_a_long_trait_is_cut_to_the_trait_limit() -> None:
    # Given a company name far longer than any real one
    template = TemplateFile(text="{{ account.name }}")

    # When it renders
    out = render(template, context(account={"name": "x" * 5000}))

    # Then it is cut to the limit
    assert out.text == "x" * TRAIT_MAX_CHARS


def test_strings_nested_in_facts_are_cleaned_too() -> None:
    # Given facts with a hostile string inside a list of dicts
    template = TemplateFile(text="{% for p in facts.projects %}[{{ p.name }}]{% endfor %}")

    # When it renders
    out = render(template, context(facts={"projects": [{"name": "a\nb"}, {"name": "c\u2028d"}]}))

    # Then every nested string was cleaned
    assert out.text == "[a b][cd]"


def test_the_subject_is_folded_onto_one_short_line() -> None:
    # Given a subject template with its own line breaks and a long trait
    template = TemplateFile(subject="  Hello\n   {{ user.first_name }}   there  ", text="t")

    # When it renders with a long name
    short = render(template, context())
    long = render(template, context(user={"first_name": "Z" * 400}))

    # Then whitespace runs become one space, ends are trimmed, and the length is capped
    assert short.subject == "Hello Ada there"
    assert len(long.subject) == SUBJECT_MAX_CHARS
    assert "\n" not in long.subject


def test_html_escapes_a_script_in_a_trait() -> None:
    # Given a trait holding markup
    template = TemplateFile(text="{{ user.first_name }}", html="<p>Hi {{ user.first_name }}</p>")

    # When it renders
    out = render(template, context(user={"first_name": "<script>alert(1)</script>"}))

    # Then the html escapes it and the text keeps it as typed (text is not HTML)
    assert out.html == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert out.text == "<script>alert(1)</script>"


def test_subject_and_text_are_not_html_escaped() -> None:
    # Given a company name with an ampersand
    template = TemplateFile(
        subject="{{ account.name }}", text="{{ account.name }}", html="{{ account.name }}"
    )

    # When it renders
    out = render(template, context(account={"name": "Tom & Jerry's"}))

    # Then only the html part escapes it
    assert out.subject == out.text == "Tom & Jerry's"
    assert out.html == "Tom &amp; Jerry&#39;s"


def test_an_empty_html_part_means_text_only() -> None:
    # Given a template with no html
    template = TemplateFile(subject="s", text="t")

    # When it renders
    out = render(template, context())

    # Then html is empty
    assert out.html == ""


def test_links_are_not_cut_or_cleaned() -> None:
    # Given a long system-made link (not user data)
    url = "https://app.example.com/u?t=" + "a" * 600
    template = TemplateFile(text="{{ links.unsubscribe }}")

    # When it renders
    out = render(template, context(links={"unsubscribe": url}))

    # Then it is intact
    assert out.text == url


def test_a_failing_template_raises_render_error_naming_it_without_the_data() -> None:
    # Given a template that adds text to a number, and a trait that is personal data
    template = TemplateFile(text="{{ facts.count + user.email }}")

    # When it renders
    with pytest.raises(RenderError) as caught:
        render(template, context(facts={"count": 1}), name="come_back")

    # Then the error names the template and part, and does not quote the email
    assert caught.value.template == "come_back"
    assert str(caught.value).startswith("come_back: text: TypeError")
    assert "ada@example.com" not in str(caught.value)


def test_a_syntax_error_raises_render_error() -> None:
    # Given a template that was never linted
    template = TemplateFile(subject="{% if %}", text="t")

    # When it renders, Then RenderError says which part
    with pytest.raises(RenderError, match="template: subject: "):
        render(template, context())


def test_templates_cannot_reach_python_internals() -> None:
    # Given a template poking at attributes the sandbox forbids
    template = TemplateFile(text="[{{ ''.__class__.__mro__ }}{{ cycler.__init__.__globals__ }}]")

    # When it renders
    out = render(template, context())

    # Then those render as nothing
    assert out.text == "[]"


@pytest.mark.parametrize("with_data", [True, False])
def test_every_template_in_rules_renders(with_data: bool) -> None:
    # Given the repository's own templates
    problems: list[RuleProblem] = []
    templates = load_templates(REPO / "rules", problems)
    assert not problems
    assert templates

    # When each renders, with full data or with nothing at all
    ctx = context() if with_data else {}
    for name, template in templates.items():
        out = render(template, ctx, name=name)

        # Then every one gives a one-line subject and a text, and no "Undefined" or "None"
        assert "\n" not in out.subject
        assert out.text.strip()
        assert "Undefined" not in out.text + out.html
        assert "None" not in out.text + out.html


# ------------------------------------------------------------------------ the marketing footer

UNSUB = "https://api.example/v1/unsubscribe?token=v1.abc.def&all=1"


def test_the_footer_ends_both_parts_with_the_link_and_the_address() -> None:
    rendered = Rendered(subject="Hi", text="Hello.\n", html="<p>Hello.</p>")

    out = with_footer(rendered, unsubscribe_url=UNSUB, postal_address="Acme Inc.\n1 Main St, Springfield")

    assert out.subject == "Hi"
    assert out.text == (
        f"Hello.\n\n--\nDon't want these emails? Unsubscribe: {UNSUB}\nAcme Inc.\n1 Main St, Springfield\n"
    )
    assert out.html.startswith("<p>Hello.</p>")
    assert (
        '<a href="https://api.example/v1/unsubscribe?token=v1.abc.def&amp;all=1">Unsubscribe</a>' in out.html
    )
    assert "<p>Acme Inc.<br>1 Main St, Springfield</p>" in out.html


def test_the_footer_goes_inside_a_whole_html_document() -> None:
    page = "<html><body><p>Hello.</p></BODY></html>"

    out = with_footer(Rendered("Hi", "Hello.", page), unsubscribe_url=UNSUB, postal_address="Acme")

    assert out.html.endswith("Acme</p></div></BODY></html>")


def test_a_text_only_email_gets_the_footer_in_its_text_and_no_html() -> None:
    out = with_footer(Rendered("Hi", "Hello.", ""), unsubscribe_url=UNSUB, postal_address="Acme")

    assert UNSUB in out.text
    assert out.html == ""


def test_the_postal_address_is_escaped_in_html() -> None:
    out = with_footer(Rendered("Hi", "x", "<p>x</p>"), unsubscribe_url=UNSUB, postal_address="A&B <Ltd>")

    assert "A&amp;B &lt;Ltd&gt;" in out.html
    assert "A&B <Ltd>" in out.text
