"""Render a message template (rules/templates/*.yaml) against one user's context.

Context keys the templates use: user (traits), account (traits, or empty), facts (incl.
summary), links (name -> url, incl. unsubscribe), next_step, rule, trigger (the event the rule
fired on: event, at, properties; nudge.domain.trigger) and last (event -> property -> the user's
latest kept value); and locale, the tag the filters `date`, `datetime`, `number`, `percent` and
`currency` format in (nudge.domain.formats).

Marketing email gets one shared footer (`with_footer`), added by the send path after rendering,
so no template can forget it: a visible unsubscribe link and the sender's postal address, in the
text part and in the html part (CAN-SPAM; Gmail's and Yahoo's bulk-sender rules).

Traits, facts and event properties are user-supplied data: before rendering, every string in them loses its
control characters and is cut to TRAIT_MAX_CHARS, so a trait cannot add a line to an SMS or a
header to an email. The subject is then folded onto one line. HTML is autoescaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from nudge.domain.formats import FILTERS
from nudge.rulebook.locales import DEFAULT_LOCALE
from nudge.rulebook.templates import TemplateFile

TRAIT_MAX_CHARS = 500
SUBJECT_MAX_CHARS = 200
# Context keys whose values come from users' and accounts' own data.
UNTRUSTED_KEYS = ("user", "account", "facts", "trigger", "last")

Part = Literal["subject", "text", "html"]

# CR, LF and TAB become spaces (words on either side stay apart); every other C0 and C1 control,
# DEL, the Unicode line and paragraph separators and the bidi overrides (which can make a
# subject read differently from what it says) are dropped.
_TO_SPACE = re.compile(r"[\r\n\t]")
_DROPPED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_WHITESPACE = re.compile(r"\s+")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
FOOTER_INVITE = "Don't want these emails?"
FOOTER_LINK = "Unsubscribe"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str  # "" when the template has no html part: send text only


class RenderError(Exception):
    """A template failed while rendering (its syntax was checked at lint; its data was not)."""

    def __init__(self, template: str, message: str) -> None:
        self.template = template
        self.message = message
        super().__init__(f"{template}: {message}")


def clean_text(value: str, limit: int = TRAIT_MAX_CHARS) -> str:
    """One user-supplied string made safe to put in a subject, an SMS or a header."""
    return _DROPPED.sub("", _TO_SPACE.sub(" ", value))[:limit]


def sanitize(value: Any) -> Any:
    """`value` with every string in it (nested in dicts, lists and tuples too) cleaned."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {key: sanitize(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize(item) for item in value]
    return value


def one_line(subject: str) -> str:
    return _WHITESPACE.sub(" ", subject).strip()[:SUBJECT_MAX_CHARS].rstrip()


# Templates are written by marketers, not by users, but a sandbox costs nothing and keeps
# `{{ ''.__class__ }}`-style reaching into Python out of them. A missing trait renders empty
# (ChainableUndefined), so `user.first_name or 'there'` and `account.name` on a user without an
# account both work.
@cache
def _environment(escaped: bool) -> jinja2.Environment:
    env = SandboxedEnvironment(autoescape=escaped, undefined=jinja2.ChainableUndefined)
    env.filters.update(FILTERS)  # date, number, ... in the message's locale (nudge.domain.formats)
    return env


@lru_cache(maxsize=256)
def _compiled(part: Part, source: str) -> jinja2.Template:
    # Templates are few and fixed per deploy: compile each once per container.
    return _environment(part == "html").from_string(source)


def _render_part(name: str, part: Part, source: str, context: Mapping[str, Any]) -> str:
    if not source:
        return ""
    try:
        return _compiled(part, source).render(context)
    except jinja2.TemplateError as exc:
        raise RenderError(name, f"{part}: {exc.message or type(exc).__name__}") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        # Only the type: Python's messages quote the values, and values are traits (PII).
        raise RenderError(name, f"{part}: {type(exc).__name__} while rendering") from exc


def render(
    template: TemplateFile,
    context: Mapping[str, Any],
    *,
    name: str = "template",
    locale: str = DEFAULT_LOCALE,
) -> Rendered:
    """Subject, text and html of `template` for `context`; raise RenderError if one fails.

    `name` (the template's file stem) is only used in errors; `locale` is what the date and number
    filters format in (the template reads it as `locale`).
    """
    safe = {key: sanitize(value) if key in UNTRUSTED_KEYS else value for key, value in context.items()}
    safe["locale"] = locale
    return Rendered(
        subject=one_line(_render_part(name, "subject", template.subject, safe)),
        text=_render_part(name, "text", template.text, safe),
        html=_render_part(name, "html", template.html, safe),
    )


def with_footer(rendered: Rendered, *, unsubscribe_url: str, postal_address: str) -> Rendered:
    """`rendered` with the marketing footer at the end of its text and of its html (before
    </body> when the template wrote a whole document). The address may span lines."""
    lines = [line.strip() for line in postal_address.strip().splitlines() if line.strip()]
    text = (
        f"{rendered.text.rstrip()}\n\n--\n{FOOTER_INVITE} {FOOTER_LINK}: {unsubscribe_url}\n"
        + "\n".join(lines)
        + "\n"
    )
    page = rendered.html
    if page:
        footer = (
            '<div style="margin-top:2em;font-size:12px;color:#666">'
            f'<p>{html.escape(FOOTER_INVITE)} <a href="{html.escape(unsubscribe_url)}">'
            f"{html.escape(FOOTER_LINK)}</a></p>"
            f"<p>{'<br>'.join(html.escape(line) for line in lines)}</p></div>"
        )
        ends = list(_BODY_END.finditer(page))
        if ends:
            at = ends[-1].start()
            page = f"{page[:at]}{footer}{page[at:]}"
        else:
            page = f"{page.rstrip()}\n{footer}\n"
    return Rendered(subject=rendered.subject, text=text, html=page)
