"""Consent that survives, on the local stack over HTTP (served on a free port, never 8080): the
footer every marketing email shows, links to the port really served, a GET that only asks, a POST
that unsubscribes, the suppression list outliving erasure, no mailto, and old links honoured.

Only HTTP and the stack's own secret are used, so each test fails on a build without the behaviour
it names rather than on a missing import."""

from __future__ import annotations

import html
import re
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import boto3
import pytest

from nudge.domain.tokens import make_token
from nudge.tools.local.environment import UNSUBSCRIBE_SECRET_PARAM
from tests.e2e.test_actions_local import at_window_start, move_clock, outbox, signed_up_with_traits, unheld
from tests.shipped import RULES

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

# Every email here waits for the rule's day and a half on the stack's clock (the module's `sent` fixture too)
pytestmark = [pytest.mark.e2e, pytest.mark.moves_clock]

# Read with getattr: on a build without the setting the tests fail on the emails, not on this line.
POSTAL = getattr(RULES.guardrails.spec.sender, "postal_address", None) or "(none in rules/guardrails.yaml)"
_FOOTER_LINK = re.compile(r"Unsubscribe: (\S+)")
_FORM = re.compile(r'<form method="post" action="([^"]*)"')
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def an_email_sent(api: Api, base: str, **traits: Any) -> tuple[str, dict[str, Any]]:
    """A user (outside the holdouts) who signed up and stalled, and the finish_setup email they got."""
    user = unheld(f"{base}-{uuid.uuid4().hex[:8]}")
    at_window_start(api)
    signed_up_with_traits(api, user, **traits)
    move_clock(api, timedelta(hours=36))
    [sent] = outbox(api, user)
    assert (sent["rule"], sent["channel"]) == ("finish_setup", "email")
    return user, sent


@pytest.fixture(scope="module")
def sent(api: Api) -> tuple[str, dict[str, Any]]:
    """One marketing email, read (never clicked) by the tests that only look at it."""
    return an_email_sent(api, "consent-read")


def header_link(sent: dict[str, Any]) -> str:
    """The https (locally: http) target of the email's List-Unsubscribe."""
    [link] = [
        t for t in re.findall(r"<([^>]+)>", sent["headers"]["List-Unsubscribe"]) if t.startswith("http")
    ]
    return str(link)


def served(api: Api, link: str) -> str:
    """The link's path and query on the API as served (whatever host and port the link names)."""
    parts = urlsplit(link)
    return f"{api.base_url}{parts.path}?{parts.query}"


def unsubscribed(api: Api, user: str) -> list[str]:
    """The user's unsubscribes, as the admin export shows them."""
    response = api.session.get(f"{api.base_url}/v1/users/{user}/export", auth=(api.admin_key, ""), timeout=30)
    assert response.status_code == 200, response.text
    delivery = response.json()["delivery"] or {}
    return sorted(delivery.get("unsubscribed") or [])


def erase(api: Api, user: str) -> None:
    response = api.session.delete(f"{api.base_url}/v1/users/{user}", auth=(api.admin_key, ""), timeout=60)
    assert response.status_code == 200, response.text


def test_a_marketing_email_shows_its_unsubscribe_link_and_postal_address_in_text_and_html(
    api: Api, sent: tuple[str, dict[str, Any]]
) -> None:
    _, email = sent

    # The text part has a visible unsubscribe link, the one List-Unsubscribe carries, and the address
    match = _FOOTER_LINK.search(email["body"])
    assert match is not None, email["body"]
    assert match.group(1) == header_link(email)
    assert POSTAL in email["body"]
    # ...and so has the html part
    assert f'href="{html.escape(header_link(email))}"' in email["html"]
    assert POSTAL in email["html"]


def test_links_point_at_the_port_really_served(api: Api, sent: tuple[str, dict[str, Any]]) -> None:
    _, email = sent
    link = header_link(email)
    assert urlsplit(api.base_url).port != 8080  # the e2e stack takes a free port: the proof needs one

    # List-Unsubscribe names this server's own address, and the footer the same link
    assert urlsplit(link).netloc == urlsplit(api.base_url).netloc
    assert link.startswith(f"{api.base_url}/v1/unsubscribe?token=")
    assert email["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_no_mailto_unsubscribe_is_advertised(sent: tuple[str, dict[str, Any]]) -> None:
    # Nothing reads such a mailbox: advertising it would promise what nobody does
    _, email = sent

    assert "mailto:" not in email["headers"]["List-Unsubscribe"]
    assert email["headers"]["List-Unsubscribe"] == f"<{header_link(email)}>"


def test_opening_the_link_asks_and_unsubscribes_nobody(api: Api, sent: tuple[str, dict[str, Any]]) -> None:
    # Given the link of an email (mail scanners and link previews open links nobody clicked)
    user, email = sent

    # When it is opened, twice
    for _ in range(2):
        page = api.session.get(served(api, header_link(email)), timeout=30)
        assert page.status_code == 200, page.text
        assert "text/html" in page.headers["Content-Type"]

    # Then the page asks, with a form that POSTs back, and the user is still subscribed
    assert _FORM.search(page.text) is not None
    assert unsubscribed(api, user) == []


def test_a_genuine_link_from_a_message_400_days_old_still_unsubscribes(api: Api) -> None:
    # Given a link the stack signed 400 days ago (its secret is still the stack's own)
    ssm = boto3.client("ssm", endpoint_url=api.stack.endpoint_url)
    secret = ssm.get_parameter(Name=UNSUBSCRIBE_SECRET_PARAM, WithDecryption=True)["Parameter"]["Value"]
    user = f"consent-old-{uuid.uuid4().hex[:8]}"
    old = make_token(secret.encode(), user, "email:onboarding", api.stack.clock.now() - timedelta(days=400))

    # When a mail client posts it (one-click)
    response = api.session.post(
        f"{api.base_url}/v1/unsubscribe", params={"token": old}, data=ONE_CLICK, timeout=30
    )

    # Then it is honoured, as only a tampered or malformed link is refused
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "email:onboarding"


def test_the_footer_link_confirmed_then_erasure_then_the_same_address_again_gets_no_mail(api: Api) -> None:
    # Given a marketing email, and its footer link followed as a person would: open, then confirm
    first, email = an_email_sent(api, "consent-footer")
    address = f"{first}@example.com"
    match = _FOOTER_LINK.search(email["body"])
    assert match is not None, "no visible unsubscribe link in the email's text"
    link = match.group(1)
    page = api.session.get(link, timeout=30)
    assert page.status_code == 200, page.text
    form = _FORM.search(page.text)
    assert form is not None
    done = api.session.post(
        urljoin(link, html.unescape(form.group(1))),
        data=ONE_CLICK,
        headers={"Accept": "text/html"},
        timeout=30,
    )
    assert done.status_code == 200, done.text
    assert "unsubscribed from onboarding emails" in html.unescape(done.text)
    assert unsubscribed(api, first) == ["email:onboarding"]

    # When the user is erased, and the same address comes back under a new id (written otherwise)
    erase(api, first)
    assert unsubscribed(api, first) == []
    again = unheld(f"consent-again-{uuid.uuid4().hex[:8]}")
    signed_up_with_traits(api, again, email=address.upper())
    move_clock(api, timedelta(hours=36))

    # Then no onboarding email reaches it, and the ledger says why
    assert outbox(api, again) == []
    reasons = {(e["rule"], e["outcome"], e["outcome_reason"]) for e in api.user(again)["ledger"]}
    assert reasons == {("finish_setup", "suppressed", "suppression_list")}


def test_a_one_click_unsubscribe_survives_erasure_of_the_user(api: Api) -> None:
    # Given a user who left onboarding email with their mail client's one-click POST
    first, email = an_email_sent(api, "consent-oneclick")
    response = api.session.post(served(api, header_link(email)), data=ONE_CLICK, timeout=30)
    assert response.status_code == 200, response.text

    # When they are erased and sign up again, under another id with the same address
    erase(api, first)
    again = unheld(f"consent-back-{uuid.uuid4().hex[:8]}")
    signed_up_with_traits(api, again, email=f"{first}@example.com")
    move_clock(api, timedelta(hours=36))

    # Then they get no onboarding email (before, erasure took the unsubscribe with it)
    assert outbox(api, again) == []
